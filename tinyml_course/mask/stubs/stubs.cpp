// Implementations of the stand-in Arduino, BluetoothSerial and TFLM declarations.
#include <stdio.h>

#include "Arduino.h"
#include "BluetoothSerial.h"
#include "stub_state.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace stub_state {
std::deque<uint8_t> bt_rx;
std::vector<uint8_t> bt_tx;
bool bt_started = false;
std::string bt_name;
uint32_t now_ms = 0;
std::vector<std::string> ops;
size_t input_elements = 0;
float input_scale = 0.0f;
int32_t input_zero_point = 0;
float output_scale = 0.0f;
int32_t output_zero_point = 0;
size_t required_arena = 0;
void RecordOp(const char* name) { ops.push_back(name); }
}  // namespace stub_state

HardwareSerial Serial;

uint32_t millis() { return stub_state::now_ms; }
uint32_t micros() { return stub_state::now_ms * 1000u; }
void delay(uint32_t ms) { stub_state::now_ms += ms; }

void HardwareSerial::begin(unsigned long) {}
size_t HardwareSerial::print(const char* text) { return static_cast<size_t>(fprintf(stderr, "%s", text)); }
size_t HardwareSerial::print(unsigned long value) { return static_cast<size_t>(fprintf(stderr, "%lu", value)); }
size_t HardwareSerial::println(const char* text) { return static_cast<size_t>(fprintf(stderr, "%s\n", text)); }
size_t HardwareSerial::println(unsigned long value) { return static_cast<size_t>(fprintf(stderr, "%lu\n", value)); }

bool BluetoothSerial::begin(const char* local_name, bool) {
  stub_state::bt_started = true;
  stub_state::bt_name = local_name;
  return true;
}
int BluetoothSerial::available() { return static_cast<int>(stub_state::bt_rx.size()); }
int BluetoothSerial::read() {
  if (stub_state::bt_rx.empty()) return -1;
  const uint8_t value = stub_state::bt_rx.front();
  stub_state::bt_rx.pop_front();
  return value;
}
size_t BluetoothSerial::write(uint8_t value) {
  stub_state::bt_tx.push_back(value);
  return 1;
}
size_t BluetoothSerial::write(const uint8_t* buffer, size_t size) {
  stub_state::bt_tx.insert(stub_state::bt_tx.end(), buffer, buffer + size);
  return size;
}

namespace tflite {

uint32_t Model::version() const { return TFLITE_SCHEMA_VERSION; }

const Model* GetModel(const void* buffer) {
  const char* bytes = static_cast<const char*>(buffer);
  static const Model model;
  if (bytes[4] != 'T' || bytes[5] != 'F' || bytes[6] != 'L' || bytes[7] != '3') return nullptr;
  return &model;
}

MicroInterpreter::MicroInterpreter(const Model* model, const MicroOpResolver&, uint8_t* tensor_arena,
                                   size_t tensor_arena_size)
    : model_(model), arena_(tensor_arena), arena_size_(tensor_arena_size) {}

TfLiteStatus MicroInterpreter::AllocateTensors() {
  if (model_ == nullptr || arena_size_ < stub_state::required_arena ||
      arena_size_ < stub_state::input_elements + 1) {
    return kTfLiteError;
  }
  input_dims_ = {4, {1, 0, 0, 1}};
  output_dims_ = {2, {1, 1, 0, 0}};
  input_ = {kTfLiteInt8, {nullptr}, &input_dims_, {stub_state::input_scale, stub_state::input_zero_point},
            stub_state::input_elements};
  input_.data.int8 = reinterpret_cast<int8_t*>(arena_);
  output_ = {kTfLiteInt8, {nullptr}, &output_dims_, {stub_state::output_scale, stub_state::output_zero_point}, 1};
  output_.data.int8 = reinterpret_cast<int8_t*>(arena_ + stub_state::input_elements);
  allocated_ = true;
  return kTfLiteOk;
}

TfLiteStatus MicroInterpreter::Invoke() {
  if (!allocated_) return kTfLiteError;
  int sum = 0;
  for (size_t i = 0; i < input_.bytes; ++i) sum += input_.data.int8[i];
  output_.data.int8[0] = static_cast<int8_t>(static_cast<uint8_t>(sum & 0xFF));
  return kTfLiteOk;
}

TfLiteTensor* MicroInterpreter::input(size_t index) { return index == 0 ? &input_ : nullptr; }
TfLiteTensor* MicroInterpreter::output(size_t index) { return index == 0 ? &output_ : nullptr; }
size_t MicroInterpreter::arena_used_bytes() const { return stub_state::input_elements + 1; }

}  // namespace tflite
