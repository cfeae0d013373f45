// Stand-in for tensorflow/lite/schema/schema_generated.h: the model handle and its version.
#ifndef TINYML_STUB_TFLITE_SCHEMA_GENERATED_H_
#define TINYML_STUB_TFLITE_SCHEMA_GENERATED_H_

#include <stdint.h>

#define TFLITE_SCHEMA_VERSION (3)

namespace tflite {

class Model {
 public:
  uint32_t version() const;
};

// Checks the flatbuffer's "TFL3" identifier like the real reader; the stand-in keeps a pointer.
const Model* GetModel(const void* buffer);

}  // namespace tflite

#endif  // TINYML_STUB_TFLITE_SCHEMA_GENERATED_H_
