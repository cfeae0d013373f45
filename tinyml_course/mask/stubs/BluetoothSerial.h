// Stand-in for the ESP32 Arduino core's BluetoothSerial. Host compile check only: received
// bytes come from stub_state::bt_rx, written bytes go to stub_state::bt_tx.
#ifndef TINYML_STUB_BLUETOOTHSERIAL_H_
#define TINYML_STUB_BLUETOOTHSERIAL_H_

#include "Arduino.h"

class BluetoothSerial {
 public:
  bool begin(const char* local_name, bool is_master = false);
  int available();
  int read();
  size_t write(uint8_t value);
  size_t write(const uint8_t* buffer, size_t size);
};

#endif  // TINYML_STUB_BLUETOOTHSERIAL_H_
