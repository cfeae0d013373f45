// State shared by the stand-ins and the host harness (not part of any real library).
#ifndef TINYML_STUB_STATE_H_
#define TINYML_STUB_STATE_H_

#include <stddef.h>
#include <stdint.h>

#include <deque>
#include <string>
#include <vector>

namespace stub_state {
extern std::deque<uint8_t> bt_rx;       // bytes the "phone/laptop" sent over Bluetooth
extern std::vector<uint8_t> bt_tx;      // bytes the sketch wrote back
extern bool bt_started;                 // SerialBT.begin() was called (setup succeeded)
extern std::string bt_name;             // the Bluetooth device name
extern uint32_t now_ms;                 // the fake clock of millis()/micros()
extern std::vector<std::string> ops;    // operators registered with the op resolver
extern size_t input_elements;           // the stand-in model's input size (int8 elements)
extern float input_scale;
extern int32_t input_zero_point;
extern float output_scale;
extern int32_t output_zero_point;
extern size_t required_arena;           // AllocateTensors fails below this many bytes
void RecordOp(const char* name);
}  // namespace stub_state

#endif  // TINYML_STUB_STATE_H_
