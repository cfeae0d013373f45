// Stand-in for TFLM's MicroMutableOpResolver: the same Add* names; registering more operators
// than the template capacity fails, as in the real resolver. Names land in stub_state.
#ifndef TINYML_STUB_MICRO_MUTABLE_OP_RESOLVER_H_
#define TINYML_STUB_MICRO_MUTABLE_OP_RESOLVER_H_

#include <stddef.h>

#include "tensorflow/lite/c/common.h"

namespace stub_state {
void RecordOp(const char* name);
}

namespace tflite {

class MicroOpResolver {
 public:
  virtual ~MicroOpResolver() = default;
};

template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
#define TINYML_STUB_OP(Name) \
  TfLiteStatus Name() { return Register(#Name); }
  TINYML_STUB_OP(AddAdd)
  TINYML_STUB_OP(AddAveragePool2D)
  TINYML_STUB_OP(AddConcatenation)
  TINYML_STUB_OP(AddConv2D)
  TINYML_STUB_OP(AddDepthwiseConv2D)
  TINYML_STUB_OP(AddDequantize)
  TINYML_STUB_OP(AddExpandDims)
  TINYML_STUB_OP(AddFullyConnected)
  TINYML_STUB_OP(AddHardSwish)
  TINYML_STUB_OP(AddLeakyRelu)
  TINYML_STUB_OP(AddLogistic)
  TINYML_STUB_OP(AddMaximum)
  TINYML_STUB_OP(AddMaxPool2D)
  TINYML_STUB_OP(AddMean)
  TINYML_STUB_OP(AddMinimum)
  TINYML_STUB_OP(AddMul)
  TINYML_STUB_OP(AddPack)
  TINYML_STUB_OP(AddPad)
  TINYML_STUB_OP(AddPadV2)
  TINYML_STUB_OP(AddQuantize)
  TINYML_STUB_OP(AddRelu)
  TINYML_STUB_OP(AddRelu6)
  TINYML_STUB_OP(AddReshape)
  TINYML_STUB_OP(AddResizeNearestNeighbor)
  TINYML_STUB_OP(AddShape)
  TINYML_STUB_OP(AddSoftmax)
  TINYML_STUB_OP(AddSqueeze)
  TINYML_STUB_OP(AddStridedSlice)
  TINYML_STUB_OP(AddSub)
  TINYML_STUB_OP(AddSum)
  TINYML_STUB_OP(AddTanh)
  TINYML_STUB_OP(AddTranspose)
#undef TINYML_STUB_OP

 private:
  TfLiteStatus Register(const char* name) {
    if (registered_ >= tOpCount) return kTfLiteError;
    ++registered_;
    stub_state::RecordOp(name);
    return kTfLiteOk;
  }
  unsigned int registered_ = 0;
};

}  // namespace tflite

#endif  // TINYML_STUB_MICRO_MUTABLE_OP_RESOLVER_H_
