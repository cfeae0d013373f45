// Stand-in for the Arduino core (ESP32): only what the mask sketch uses. Host compile check only.
#ifndef TINYML_STUB_ARDUINO_H_
#define TINYML_STUB_ARDUINO_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// The ESP32 core's sdkconfig defines these when Bluetooth Classic is available.
#define CONFIG_BT_ENABLED 1
#define CONFIG_BLUEDROID_ENABLED 1

uint32_t millis();
uint32_t micros();
void delay(uint32_t ms);

class HardwareSerial {
 public:
  void begin(unsigned long baud);
  size_t print(const char* text);
  size_t print(unsigned long value);
  size_t println(const char* text);
  size_t println(unsigned long value);
};

extern HardwareSerial Serial;

#endif  // TINYML_STUB_ARDUINO_H_
