// Host harness for the generated mask sketch: drives setup() and loop() with bytes from stdin.
//
//   harness serve     stdin -> Bluetooth -> sketch; its replies -> stdout. After the input, the
//                     fake clock moves past kFrameTimeoutMs and loop() runs once more, so a
//                     trailing partial frame is answered with TIMEOUT (like Decoder.expire()).
//   harness quantize  MaskQuantizePixel(0..255), one per line.
//   harness settings  the constants and the registered operators, "name value" per line.
// Exit status 3 if setup() failed (its message is on stderr).
#include <stdio.h>
#include <string.h>

#include "Arduino.h"
#include "mask_protocol.h"
#include "model_settings.h"
#include "stub_state.h"

void setup();
void loop();

static int Setup() {
  stub_state::input_elements = kInputPixels;
  stub_state::input_scale = kInputScale;
  stub_state::input_zero_point = kInputZeroPoint;
  stub_state::output_scale = kOutputScale;
  stub_state::output_zero_point = kOutputZeroPoint;
  setup();
  return stub_state::bt_started ? 0 : 3;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "serve";
  if (strcmp(mode, "quantize") == 0) {
    for (int pixel = 0; pixel < 256; ++pixel) printf("%d\n", MaskQuantizePixel(static_cast<uint8_t>(pixel)));
    return 0;
  }
  if (Setup() != 0) return 3;
  if (strcmp(mode, "settings") == 0) {
    printf("input_size %d\ninput_scale %.9g\ninput_zero_point %d\n", kInputSize, kInputScale, kInputZeroPoint);
    printf("output_scale %.9g\noutput_zero_point %d\n", kOutputScale, kOutputZeroPoint);
    printf("tensor_arena_size %d\nop_count %d\nmax_payload %d\n", kTensorArenaSize, kOpCount, kProtocolMaxPayload);
    printf("device_name %s\n", stub_state::bt_name.c_str());
    for (const std::string& op : stub_state::ops) printf("op %s\n", op.c_str());
    return 0;
  }
  if (strcmp(mode, "serve") != 0) {
    fprintf(stderr, "unknown mode %s (serve, quantize, settings)\n", mode);
    return 2;
  }
  int value;
  while ((value = getchar()) != EOF) stub_state::bt_rx.push_back(static_cast<uint8_t>(value));
  while (!stub_state::bt_rx.empty()) loop();
  stub_state::now_ms += kFrameTimeoutMs + 1;
  loop();
  fwrite(stub_state::bt_tx.data(), 1, stub_state::bt_tx.size(), stdout);
  return 0;
}
