"""Microcontroller classes and a check of whether a model fits one.

Flash holds the program and the weights; RAM (SRAM) holds the activations (the
tensor arena) and the stack. ``ram_bytes`` and ``flash_bytes`` are the datasheet values
of each board (1 KB = 1,024 bytes). Not all of that RAM can hold a tensor arena: the
runtime, the radio stacks and the way the arena is allocated take their share first, so
each board also has ``usable_ram_bytes``, the documented ceiling for the arena, with its
source. :func:`check_fit` checks the RAM need against that figure.
"""

from __future__ import annotations

from dataclasses import dataclass

KB = 1024
MB = 1024 * KB


@dataclass(frozen=True)
class Device:
    """A target board and its memory budget."""

    name: str
    processor: str
    clock_mhz: float
    ram_bytes: int
    flash_bytes: int
    has_fpu: bool
    notes: str = ""
    usable_ram_bytes: int = 0  # 0: all of ram_bytes
    usable_ram_source: str = "datasheet; no runtime reservation documented"

    def __post_init__(self) -> None:
        if not 0 <= self.usable_ram_bytes <= self.ram_bytes:
            raise ValueError(
                f"{self.name}: usable_ram_bytes must be between 0 and ram_bytes ({self.ram_bytes:,}); "
                f"got {self.usable_ram_bytes:,}."
            )
        if self.usable_ram_bytes == 0:
            object.__setattr__(self, "usable_ram_bytes", self.ram_bytes)


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device(
            "Arduino Uno",
            "ATmega328P (8-bit AVR)",
            16,
            2 * KB,
            32 * KB,
            False,
            "the classic hobby board: too small for almost any neural network",
        ),
        Device(
            "Arduino Nano 33 BLE Sense",
            "nRF52840 (Cortex-M4F)",
            64,
            256 * KB,
            1 * MB,
            True,
            "the TinyML board of HarvardX tinyMLx",
        ),
        Device(
            "ESP32-WROOM-32",
            "ESP32 (dual Xtensa LX6)",
            240,
            320 * KB,
            4 * MB,
            True,
            "Wi-Fi + Bluetooth; the board of the mask-detection demo (320 KB DRAM)",
            160 * KB,
            "ESP-IDF Programming Guide, Memory Types: statically allocated DRAM is limited to "
            "160 KB, the rest of the 320 KB is heap only; a sketch's tensor arena is a static "
            "array, and FreeRTOS and Bluetooth Classic take their share of it too (an upper bound)",
        ),
        Device(
            "STM32F746 Discovery",
            "STM32F746 (Cortex-M7)",
            216,
            320 * KB,
            1 * MB,
            True,
            "the board of the MCUNet papers",
        ),
        Device(
            "Raspberry Pi 4 (4 GB)",
            "BCM2711 (4x Cortex-A72)",
            1500,
            4096 * MB,
            32 * 1024 * MB,
            True,
            "a Linux computer, for contrast; 'flash' is a 32 GB SD card",
        ),
    )
}


def get_device(name: str) -> Device:
    """Look a device up by (case-insensitive, partial) name.

    Raises
    ------
    KeyError
        If no device or more than one matches; the message lists the known names.
    """
    if isinstance(name, Device):
        return name
    matches = [d for key, d in DEVICES.items() if name.lower() in key.lower()]
    if len(matches) != 1:
        raise KeyError(
            f"device {name!r} {'is ambiguous' if matches else 'is unknown'}; known devices: {list(DEVICES)}"
        )
    return matches[0]


@dataclass(frozen=True)
class FitReport:
    """Whether a model fits a device, with the margins (negative: over budget by that much)."""

    device: Device
    flash_needed: int
    ram_needed: int

    @property
    def flash_margin(self) -> int:
        return self.device.flash_bytes - self.flash_needed

    @property
    def ram_margin(self) -> int:
        """RAM left for everything else, against the board's usable RAM for the arena."""
        return self.device.usable_ram_bytes - self.ram_needed

    @property
    def fits(self) -> bool:
        return self.flash_margin >= 0 and self.ram_margin >= 0

    def __str__(self) -> str:
        verdict = "fits" if self.fits else "does NOT fit"
        return (
            f"{self.device.name}: {verdict} (flash {self.flash_needed:,} of {self.device.flash_bytes:,} B, "
            f"margin {self.flash_margin:+,} B; RAM {self.ram_needed:,} of {self.device.usable_ram_bytes:,} B "
            f"usable ({self.device.ram_bytes:,} B in all), margin {self.ram_margin:+,} B)"
        )


def check_fit(flash_bytes: int, ram_bytes: int, device: str | Device) -> FitReport:
    """Check a model's flash (weights / .tflite size) and RAM (arena) need against a device.

    Parameters
    ----------
    flash_bytes : int
        Bytes the model needs in flash, e.g. the int8 ``.tflite`` size.
    ram_bytes : int
        Bytes it needs in RAM, e.g. the peak activation memory or the measured arena;
        checked against the device's ``usable_ram_bytes``.
    device : str or Device
        A name from :data:`DEVICES` (partial names work: ``"ESP32"``).

    Examples
    --------
    >>> check_fit(100_000, 20_000, "ESP32").fits
    True
    """
    for arg, value in (("flash_bytes", flash_bytes), ("ram_bytes", ram_bytes)):
        if not isinstance(value, (int,)) and not (
            hasattr(value, "item") and float(value).is_integer()
        ):
            raise TypeError(f"{arg} must be a whole number of bytes; got {value!r}.")
        if int(value) < 0:
            raise ValueError(f"{arg} must be >= 0; got {value}.")
    return FitReport(get_device(device), int(flash_bytes), int(ram_bytes))


def fit_table(
    flash_bytes: int, ram_bytes: int, devices: list[str] | None = None
) -> list[FitReport]:
    """:func:`check_fit` against every catalogued device (or those named)."""
    return [check_fit(flash_bytes, ram_bytes, name) for name in (devices or list(DEVICES))]
