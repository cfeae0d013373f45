"""The chips the virtual board can be: memory map, clock and the stack the course reserves.

A :class:`Board` is what the linker and the emulator need to know about a microcontroller:
where flash and RAM start and how big they are (from the chip's datasheet), its clock (for
turning cycles into milliseconds) and how many bytes of RAM the course reserves for the
stack. The memory map is the bare chip's: on an Arduino Nano 33 BLE Sense the bootloader
keeps the first 64 KB of flash (the sketch starts at 0x10000), which the virtual board does
not model.

Examples
--------
>>> board = get_board("nrf52840")
>>> board.name, hex(board.ram_origin), board.ram_bytes // 1024
('nRF52840', '0x20000000', 256)
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyml_course.devices import DEVICES

KB = 1024

_CPUS = ("cortex-m4",)
_PAGE = 4 * KB  # the emulator maps memory in 4 KB pages


@dataclass(frozen=True)
class Board:
    """A Cortex-M microcontroller as the build and the emulator see it.

    Parameters
    ----------
    name : str
        The chip, e.g. ``"nRF52840"`` (what :func:`get_board` looks up, case-insensitive).
    device : str or None
        The matching entry of :data:`tinyml_course.devices.DEVICES` (the board a learner
        buys), or None when the course has no device entry for it.
    cpu : str
        The processor core; only ``"cortex-m4"`` is supported.
    flash_origin, flash_bytes : int
        Start address and size of the on-chip flash (program, constants, weights).
    ram_origin, ram_bytes : int
        Start address and size of the on-chip SRAM (.data, .bss, stack).
    clock_hz : int
        The core clock, used to turn estimated cycles into milliseconds.
    stack_bytes : int
        RAM reserved for the stack at the top of RAM (the course's choice, not a datasheet
        figure); the linker refuses a program whose .data + .bss do not leave room for it.
    source : str
        Where the memory map and clock come from.
    """

    name: str
    device: str | None
    cpu: str
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    clock_hz: int
    stack_bytes: int
    source: str

    def __post_init__(self) -> None:
        if self.cpu not in _CPUS:
            raise ValueError(f"cpu={self.cpu!r} is not supported; use one of {_CPUS}.")
        if self.device is not None and self.device not in DEVICES:
            raise ValueError(
                f"device={self.device!r} is not in tinyml_course.devices.DEVICES; use one of "
                f"{sorted(DEVICES)} or None."
            )
        for arg in ("flash_origin", "flash_bytes", "ram_origin", "ram_bytes"):
            value = getattr(self, arg)
            if not isinstance(value, int) or value < 0 or value % _PAGE:
                raise ValueError(
                    f"{arg} must be a non-negative multiple of 4 KB (the emulator maps 4 KB "
                    f"pages); got {value!r}."
                )
        if self.flash_bytes == 0 or self.ram_bytes == 0:
            raise ValueError(
                f"flash_bytes and ram_bytes must be > 0; got {self.flash_bytes} and {self.ram_bytes}."
            )
        flash = (self.flash_origin, self.flash_origin + self.flash_bytes)
        ram = (self.ram_origin, self.ram_origin + self.ram_bytes)
        if flash[0] < ram[1] and ram[0] < flash[1]:
            raise ValueError(
                f"flash {flash[0]:#x}-{flash[1]:#x} and RAM {ram[0]:#x}-{ram[1]:#x} overlap; "
                "give them separate address ranges."
            )
        if max(flash[1], ram[1]) > 2**32:
            raise ValueError("flash and RAM must lie below 4 GB (32-bit addresses).")
        if not isinstance(self.clock_hz, int) or self.clock_hz <= 0:
            raise ValueError(f"clock_hz must be a positive integer; got {self.clock_hz!r}.")
        if not isinstance(self.stack_bytes, int) or self.stack_bytes < 256 or self.stack_bytes % 8:
            raise ValueError(
                f"stack_bytes must be a multiple of 8 and at least 256; got {self.stack_bytes!r}."
            )
        if self.stack_bytes >= self.ram_bytes:
            raise ValueError(
                f"stack_bytes={self.stack_bytes} leaves no RAM for data (ram_bytes={self.ram_bytes})."
            )

    @property
    def flash_end(self) -> int:
        """First address after flash."""
        return self.flash_origin + self.flash_bytes

    @property
    def ram_end(self) -> int:
        """First address after RAM (the initial stack pointer)."""
        return self.ram_origin + self.ram_bytes

    @property
    def clock_mhz(self) -> float:
        """The clock in MHz."""
        return self.clock_hz / 1e6


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            name="nRF52840",
            device="Arduino Nano 33 BLE Sense",
            cpu="cortex-m4",
            flash_origin=0x0000_0000,
            flash_bytes=1024 * KB,
            ram_origin=0x2000_0000,
            ram_bytes=256 * KB,
            clock_hz=64_000_000,
            stack_bytes=8 * KB,
            source=(
                "Nordic nRF52840 Product Specification v1.7, section 4.2 'Memory' (1 MB flash "
                "at 0x00000000, 256 KB RAM at 0x20000000) and 'CPU' (64 MHz Arm Cortex-M4F)"
            ),
        ),
        Board(
            name="STM32F411",
            device=None,
            cpu="cortex-m4",
            flash_origin=0x0800_0000,
            flash_bytes=512 * KB,
            ram_origin=0x2000_0000,
            ram_bytes=128 * KB,
            clock_hz=100_000_000,
            stack_bytes=8 * KB,
            source=(
                "ST STM32F411xC/xE datasheet DS10314, section 5 'Memory mapping' (512 KB flash "
                "at 0x08000000, 128 KB SRAM at 0x20000000) and section 1 (Cortex-M4 with FPU, "
                "up to 100 MHz); the STM32F411E-DISCO and 'Black Pill' boards"
            ),
        ),
    )
}

DEFAULT_BOARD = "nRF52840"


def get_board(board: str | Board = DEFAULT_BOARD) -> Board:
    """The :class:`Board` called ``board`` (case-insensitive), or ``board`` itself.

    Parameters
    ----------
    board : str or Board
        A name in :data:`BOARDS` (``"nRF52840"``, ``"STM32F411"``) or a :class:`Board`.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.

    Examples
    --------
    >>> get_board("STM32F411").clock_mhz
    100.0
    """
    if isinstance(board, Board):
        return board
    if not isinstance(board, str):
        raise TypeError(f"board must be a board name or a Board; got {type(board).__name__}.")
    for name, value in BOARDS.items():
        if name.lower() == board.strip().lower():
            return value
    raise ValueError(f"board={board!r} is not a known board; use one of {sorted(BOARDS)}.")
