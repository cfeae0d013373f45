// Stand-in for TFLM's MicroInterpreter (current API, no ErrorReporter). It does not run the
// model: Invoke() writes the low byte of the sum of the int8 inputs to the single int8 output,
// so a test can check that every pixel reached the input tensor. Shapes and quantization
// parameters are set by the harness (stub_state), from the generated constants.
#ifndef TINYML_STUB_MICRO_INTERPRETER_H_
#define TINYML_STUB_MICRO_INTERPRETER_H_

#include <stddef.h>
#include <stdint.h>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tflite {

class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver, uint8_t* tensor_arena,
                   size_t tensor_arena_size);
  TfLiteStatus AllocateTensors();
  TfLiteStatus Invoke();
  TfLiteTensor* input(size_t index);
  TfLiteTensor* output(size_t index);
  size_t arena_used_bytes() const;

 private:
  const Model* model_;
  uint8_t* arena_;
  size_t arena_size_;
  bool allocated_ = false;
  TfLiteTensor input_;
  TfLiteTensor output_;
  TfLiteIntArray input_dims_;
  TfLiteIntArray output_dims_;
};

}  // namespace tflite

#endif  // TINYML_STUB_MICRO_INTERPRETER_H_
