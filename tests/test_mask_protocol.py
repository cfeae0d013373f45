"""The mask demo's framed serial protocol: encoding, decoding, malformed frames, resynchronisation."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tinyml_course.mask.protocol import (
    SYNC,
    DecodeError,
    Decoder,
    DeviceInfo,
    ErrorCode,
    Message,
    MessageType,
    Score,
    crc16,
    device_max_payload,
    encode,
    encode_error,
    encode_frame,
    encode_gray,
)


def test_crc16_is_ccitt_false() -> None:
    # The catalogue check value of CRC-16/CCITT-FALSE, and the empty input (the initial value).
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    assert crc16(b"\x00") != crc16(b"\x01")


def test_encode_layout() -> None:
    frame = encode(MessageType.FRAME, b"\x01\x02\x03", seq=9)
    assert frame[:2] == SYNC
    assert frame[2] == 0x01 and frame[3] == 9
    assert struct.unpack("<H", frame[4:6])[0] == 3
    assert frame[6:9] == b"\x01\x02\x03"
    assert struct.unpack("<H", frame[9:11])[0] == crc16(frame[2:9])
    assert len(frame) == 6 + 3 + 2


@pytest.mark.parametrize("kwargs", [{"seq": 256}, {"seq": -1}])
def test_encode_rejects_bad_sequence_numbers(kwargs) -> None:
    with pytest.raises(ValueError, match="seq"):
        encode(MessageType.INFO, **kwargs)


def test_encode_rejects_oversized_payload() -> None:
    with pytest.raises(ValueError, match="max_payload"):
        encode(MessageType.FRAME, bytes(2000))


def test_frame_round_trip_keeps_int8_pixels() -> None:
    pixels = np.arange(-50, 50, dtype=np.int8).reshape(10, 10)
    (message,) = Decoder().feed(encode_frame(pixels, seq=3))
    assert message == Message(MessageType.FRAME, 3, pixels.tobytes())
    assert np.array_equal(np.frombuffer(message.payload, np.int8).reshape(10, 10), pixels)


def test_encode_frame_refuses_unquantized_pixels() -> None:
    with pytest.raises(TypeError, match="quantize_frame"):
        encode_frame(np.zeros((10, 10), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        encode_gray(np.zeros((10, 10), np.int8))


def test_byte_by_byte_equals_all_at_once() -> None:
    stream = (
        b"xx"
        + encode(MessageType.INFO, seq=1)
        + encode_gray(np.full(16, 7, np.uint8), seq=2)
        + b"\xa5"
    )
    whole = Decoder().feed(stream)
    decoder = Decoder()
    pieces = [event for byte in stream for event in decoder.feed(bytes([byte]))]
    assert pieces == whole
    assert [m.seq for m in whole] == [1, 2]
    assert decoder.pending == 1  # the trailing lone sync byte waits for its pair


def test_garbage_before_a_frame_is_skipped() -> None:
    decoder = Decoder()
    events = decoder.feed(b"\x00\xff\xa5\x00hello" + encode(MessageType.INFO, seq=4))
    assert events == [Message(MessageType.INFO, 4, b"")]
    assert decoder.skipped_bytes == 9


def test_bad_checksum_is_reported_and_the_next_frame_survives() -> None:
    bad = bytearray(encode(MessageType.FRAME, bytes(100), seq=5))
    bad[20] ^= 0x10
    events = Decoder().feed(bytes(bad) + encode(MessageType.INFO, seq=6))
    assert (
        isinstance(events[0], DecodeError)
        and events[0].code == ErrorCode.BAD_CRC
        and events[0].seq == 5
    )
    assert events[-1] == Message(MessageType.INFO, 6, b"")


def test_over_long_header_is_rejected_at_once() -> None:
    decoder = Decoder(max_payload=100)
    header = SYNC + bytes([MessageType.FRAME, 8]) + struct.pack("<H", 5000)
    events = decoder.feed(header)
    assert events == [DecodeError(ErrorCode.BAD_LENGTH, 8, events[0].reason)]
    assert "5000" in events[0].reason
    assert decoder.feed(encode(MessageType.INFO, seq=9)) == [Message(MessageType.INFO, 9, b"")]


def test_unknown_type_is_reported_after_its_checksum() -> None:
    events = Decoder().feed(encode(0x42, b"abc", seq=11) + encode(MessageType.INFO, seq=12))
    assert events[0] == DecodeError(ErrorCode.UNKNOWN_TYPE, 11, events[0].reason)
    assert events[1] == Message(MessageType.INFO, 12, b"")


def test_truncated_frame_does_not_swallow_the_next_one() -> None:
    # A frame cut short (a lost Bluetooth packet) followed by a complete frame: the decoder
    # reads the second frame's bytes as the first one's payload, the checksum fails, and it
    # resynchronises inside the buffer and still finds the complete frame.
    truncated = encode(MessageType.FRAME, bytes(range(100)), seq=1)[:40]
    good = encode(MessageType.FRAME, bytes(100), seq=2)
    events = Decoder(max_payload=100).feed(truncated + good + encode(MessageType.INFO, seq=3))
    assert any(isinstance(e, DecodeError) and e.code == ErrorCode.BAD_CRC for e in events)
    messages = [e for e in events if isinstance(e, Message)]
    assert [(m.type, m.seq) for m in messages] == [(MessageType.FRAME, 2), (MessageType.INFO, 3)]


def test_expire_turns_a_stalled_frame_into_a_timeout() -> None:
    decoder = Decoder()
    assert decoder.feed(encode(MessageType.FRAME, bytes(100), seq=21)[:30]) == []
    event = decoder.expire()
    assert event is not None and event.code == ErrorCode.TIMEOUT and event.seq == 21
    assert decoder.pending == 0
    assert (
        decoder.feed(b"\xa5") == [] and decoder.expire() is None
    )  # a lone sync byte is just dropped


def test_random_noise_never_crashes_and_frames_still_decode() -> None:
    rng = np.random.default_rng(0)
    decoder = Decoder(max_payload=256)
    found = []
    for i in range(200):
        noise = rng.integers(0, 256, size=int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        events = decoder.feed(noise + encode(MessageType.INFO, seq=i % 256))
        found += [e.seq for e in events if isinstance(e, Message) and e.type == MessageType.INFO]
    # Noise can start a bogus header that swallows a frame now and then, but nearly all survive.
    assert len(found) >= 190
    assert found == sorted(found)


def test_score_and_device_info_payloads_round_trip() -> None:
    score = Score(-17, 1234)
    assert Score.from_payload(score.to_payload()) == score
    info = DeviceInfo(10, 1 / 255, -128, 1 / 256, -128, 4096)
    back = DeviceInfo.from_payload(info.to_payload())
    assert back.size == 10 and back.input_zero_point == -128 and back.arena_bytes == 4096
    assert back.input_scale == pytest.approx(1 / 255, rel=1e-7)
    assert back.dequantize(127) == pytest.approx(255 / 256)
    assert back.dequantize(-128) == 0.0
    with pytest.raises(ValueError, match="16 bytes"):
        DeviceInfo.from_payload(b"\x00" * 5)


def test_error_reply_and_device_payload_limit() -> None:
    (message,) = Decoder().feed(encode_error(ErrorCode.BAD_CRC, seq=77))
    assert message.type == MessageType.ERROR and message.seq == 77 and message.payload == b"\x01"
    assert device_max_payload(10) == 100 and device_max_payload(4) == 64
    with pytest.raises(ValueError, match="size"):
        device_max_payload(0)
