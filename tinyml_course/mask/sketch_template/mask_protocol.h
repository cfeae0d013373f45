// mask_protocol.h: the framed serial protocol of tinyml_course.mask.protocol, in C++.
//
// Frame: sync 0xA5 0x5A | type | seq | length (2 bytes, little-endian) | payload |
//        CRC-16/CCITT-FALSE (2 bytes, little-endian) over type, seq, length and payload.
// The parser is the same algorithm as the Python Decoder: skip bytes until a sync pattern;
// on a bad length or a bad checksum drop only the first sync byte and search again, so a
// good frame inside a damaged one is still found. Plain C++ (no Arduino calls), so the
// host compiler can test it against the Python implementation.
// Copied into the sketch by tinyml_course.mask.sketch.generate_sketch.
#ifndef MASK_PROTOCOL_H_
#define MASK_PROTOCOL_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model_settings.h"

enum MaskEventKind { kMaskNone = 0, kMaskMessage = 1, kMaskError = 2 };

struct MaskEvent {
  MaskEventKind kind;
  uint8_t type;            // message type (kMaskMessage)
  uint8_t seq;             // sequence number (0 if it could not be read)
  uint8_t error;           // error code (kMaskError)
  const uint8_t* payload;  // valid until the parser's next call
  uint16_t length;
};

// CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final xor.
inline uint16_t MaskCrc16(const uint8_t* data, size_t length) {
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < length; ++i) {
    crc ^= static_cast<uint16_t>(data[i]) << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

// Write one frame into out (room for kProtocolHeaderBytes + length + kProtocolCrcBytes bytes).
inline size_t MaskEncode(uint8_t type, uint8_t seq, const uint8_t* payload, uint16_t length, uint8_t* out) {
  out[0] = kSync0;
  out[1] = kSync1;
  out[2] = type;
  out[3] = seq;
  out[4] = static_cast<uint8_t>(length & 0xFF);
  out[5] = static_cast<uint8_t>(length >> 8);
  if (length > 0) memcpy(out + kProtocolHeaderBytes, payload, length);
  const uint16_t crc = MaskCrc16(out + 2, 4 + static_cast<size_t>(length));
  out[kProtocolHeaderBytes + length] = static_cast<uint8_t>(crc & 0xFF);
  out[kProtocolHeaderBytes + length + 1] = static_cast<uint8_t>(crc >> 8);
  return kProtocolHeaderBytes + length + kProtocolCrcBytes;
}

// The model's int8 input for a grey pixel: clip(round(pixel / 255 / scale) + zero_point),
// in float32 with ties rounded away from zero (roundf, like TFLite's QUANTIZE kernel):
// exactly tinyml_course.mask.preprocess.quantize_frame on the host.
inline int8_t MaskQuantizePixel(uint8_t pixel) {
  const float x = static_cast<float>(pixel) / 255.0f;
  float q = roundf(x / kInputScale) + static_cast<float>(kInputZeroPoint);
  if (q < -128.0f) q = -128.0f;
  if (q > 127.0f) q = 127.0f;
  return static_cast<int8_t>(q);
}

inline bool MaskKnownType(uint8_t type) {
  return type == kMsgFrame || type == kMsgGray || type == kMsgInfo || type == kMsgScore ||
         type == kMsgDevice || type == kMsgError;
}

class MaskParser {
 public:
  static const size_t kCapacity = kProtocolHeaderBytes + kProtocolMaxPayload + kProtocolCrcBytes;

  void Reset() { size_ = 0; }
  size_t Pending() const { return size_; }

  // Add one received byte, then call Next() until it returns kMaskNone.
  // Returns false if the byte did not fit (impossible when Next() is drained after each byte).
  bool Feed(uint8_t byte) {
    if (size_ >= kCapacity) return false;
    buffer_[size_++] = byte;
    return true;
  }

  // The next complete message or error in the buffer (kind kMaskNone: wait for more bytes).
  MaskEvent Next() {
    MaskEvent event = {kMaskNone, 0, 0, 0, nullptr, 0};
    size_t start = 0;
    while (start < size_ && !(buffer_[start] == kSync0 && (start + 1 == size_ || buffer_[start + 1] == kSync1))) {
      ++start;
    }
    if (start > 0) Drop(start);
    if (size_ < kProtocolHeaderBytes) return event;
    const uint8_t type = buffer_[2];
    const uint8_t seq = buffer_[3];
    const uint16_t length = static_cast<uint16_t>(buffer_[4] | (buffer_[5] << 8));
    event.seq = seq;
    if (length > kProtocolMaxPayload) {
      Drop(1);
      event.kind = kMaskError;
      event.error = kErrBadLength;
      return event;
    }
    const size_t total = kProtocolHeaderBytes + length + kProtocolCrcBytes;
    if (size_ < total) return event;
    const uint16_t received = static_cast<uint16_t>(buffer_[total - 2] | (buffer_[total - 1] << 8));
    if (MaskCrc16(buffer_ + 2, total - 4) != received) {
      Drop(1);
      event.kind = kMaskError;
      event.error = kErrBadCrc;
      return event;
    }
    memcpy(frame_, buffer_, total);
    Drop(total);
    if (!MaskKnownType(type)) {
      event.kind = kMaskError;
      event.error = kErrUnknownType;
      return event;
    }
    event.kind = kMaskMessage;
    event.type = type;
    event.payload = frame_ + kProtocolHeaderBytes;
    event.length = length;
    return event;
  }

  // Call after kFrameTimeoutMs without bytes: a started frame becomes a TIMEOUT error;
  // a lone first sync byte is dropped silently.
  MaskEvent Expire() {
    MaskEvent event = {kMaskNone, 0, 0, 0, nullptr, 0};
    if (size_ >= 2) {
      event.kind = kMaskError;
      event.error = kErrTimeout;
      event.seq = size_ >= 4 ? buffer_[3] : 0;
    }
    size_ = 0;
    return event;
  }

 private:
  void Drop(size_t count) {
    memmove(buffer_, buffer_ + count, size_ - count);
    size_ -= count;
  }

  uint8_t buffer_[kCapacity];
  uint8_t frame_[kCapacity];
  size_t size_ = 0;
};

#endif  // MASK_PROTOCOL_H_
