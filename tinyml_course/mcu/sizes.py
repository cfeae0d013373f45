"""What a firmware image costs in flash and in RAM, read from its ELF file.

Flash holds everything the chip must keep when powered off: the vector table
(``.isr_vector``), the code (``.text``), constants such as weights (``.rodata``), the unwind
tables of the compiler's runtime (``.ARM.exidx``) and the *initial values* of initialised
variables (``.data``, copied to RAM at reset). Static RAM is ``.data`` plus the zeroed
variables (``.bss``). The stack comes on top of that: the linker script reserves
:attr:`~tinyml_course.mcu.board.Board.stack_bytes` for it, and the emulator measures how much
of it a run really used.

Examples
--------
>>> from tinyml_course.mcu.build import build  # doctest: +SKIP
>>> fw = build({"main.c": "const int w[1000] = {1}; int main(void) { return w[0]; }"})  # doctest: +SKIP
>>> fw.sizes.flash_bytes > 4000, fw.sizes.static_ram_bytes < 100  # doctest: +SKIP
(True, True)
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from tinyml_course.mcu.board import Board

_FLASH_SECTIONS = (".isr_vector", ".text", ".rodata", ".ARM.exidx", ".ARM.extab")


@dataclass(frozen=True)
class Symbol:
    """A named function or variable of the firmware.

    Attributes
    ----------
    name : str
        The C name.
    address : int
        Where it lives (for a variable in RAM: the address the host reads or writes).
    size : int
        Its size in bytes (0 for labels such as linker symbols).
    kind : str
        ``"function"``, ``"object"`` (a variable or constant) or ``"other"``.
    section : str
        The output section holding it (``.text``, ``.rodata``, ``.data``, ``.bss``), or ``""``.
    """

    name: str
    address: int
    size: int
    kind: str
    section: str


@dataclass(frozen=True)
class Sizes:
    """Section and symbol sizes of a firmware image.

    Attributes
    ----------
    sections : dict[str, int]
        Bytes of every allocated section (``.text``, ``.rodata``, ``.data``, ``.bss``, ...).
    flash_bytes : int
        Bytes the image occupies in flash: the loadable contents of every section stored in
        flash, ``.data``'s initial values included.
    static_ram_bytes : int
        ``.data`` + ``.bss`` (and any other RAM section), without the stack.
    stack_reserved_bytes : int
        The stack the linker script reserves at the top of RAM (0 if unknown).
    symbols : dict[str, Symbol]
        Named functions and variables, by name.
    """

    sections: dict[str, int]
    flash_bytes: int
    static_ram_bytes: int
    stack_reserved_bytes: int
    symbols: dict[str, Symbol] = field(repr=False)

    @property
    def code_bytes(self) -> int:
        """``.isr_vector`` + ``.text`` (+ the compiler runtime's unwind tables)."""
        return sum(
            self.sections.get(s, 0) for s in (".isr_vector", ".text", ".ARM.exidx", ".ARM.extab")
        )

    @property
    def rodata_bytes(self) -> int:
        """``.rodata``: constants, weights among them."""
        return self.sections.get(".rodata", 0)

    @property
    def data_bytes(self) -> int:
        """``.data``: initialised variables (in RAM, and their initial values in flash)."""
        return self.sections.get(".data", 0)

    @property
    def bss_bytes(self) -> int:
        """``.bss``: zero-initialised variables (RAM only)."""
        return self.sections.get(".bss", 0)

    def largest(
        self, n: int = 10, sections: tuple[str, ...] = (".text", ".rodata")
    ) -> list[Symbol]:
        """The ``n`` biggest symbols of the given sections, largest first.

        Parameters
        ----------
        n : int
            How many to return.
        sections : tuple of str
            Which output sections to look in; ``(".text", ".rodata")`` shows "code vs
            weights", ``(".data", ".bss")`` the RAM users.

        Returns
        -------
        list of Symbol
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}.")
        if isinstance(sections, str):
            raise TypeError(
                f"sections must be a tuple of section names; got the string {sections!r}."
            )
        chosen = [s for s in self.symbols.values() if s.section in sections and s.size > 0]
        return sorted(chosen, key=lambda s: (-s.size, s.name))[:n]

    def breakdown(self, n: int = 10) -> list[tuple[str, str, int]]:
        """Rows ``(name, section, bytes)`` of the biggest flash symbols, then ``(other ...)``.

        The rows add up to the flash size: the ``n`` largest ``.text``/``.rodata`` symbols,
        then one row per flash section for everything else in it (small functions, the
        vector table, ``.data``'s initial values).

        Parameters
        ----------
        n : int
            How many individual symbols to list.
        """
        top = self.largest(n, (".text", ".rodata"))
        rows = [(s.name, s.section, s.size) for s in top]
        listed: dict[str, int] = {}
        for s in top:
            listed[s.section] = listed.get(s.section, 0) + s.size
        for section in (*_FLASH_SECTIONS, ".data"):
            rest = self.sections.get(section, 0) - listed.get(section, 0)
            if rest > 0:
                rows.append((f"(other {section})", section, rest))
        return rows


def _open(elf: bytes | str | Path):
    from elftools.elf.elffile import ELFFile

    if isinstance(elf, (bytes, bytearray)):
        return ELFFile(io.BytesIO(bytes(elf)))
    path = Path(elf)
    if not path.is_file():
        raise FileNotFoundError(f"elf={str(path)!r} is not a file; pass an ELF file or its bytes.")
    return ELFFile(io.BytesIO(path.read_bytes()))


def read_sizes(elf: bytes | str | Path, board: Board | None = None) -> Sizes:
    """Section sizes, flash and static RAM use, and the symbol table of an ELF image.

    Parameters
    ----------
    elf : bytes or path
        The firmware (an ELF file for a 32-bit Arm core).
    board : Board, optional
        Used to tell flash from RAM by address; without it, sections are classified by name
        (flash: ``.isr_vector``, ``.text``, ``.rodata``, ``.ARM.*``; ``.data`` counts in both).

    Returns
    -------
    Sizes
    """
    from elftools.common.exceptions import ELFError
    from elftools.elf.constants import SH_FLAGS

    try:
        f = _open(elf)
        if f.get_machine_arch() != "ARM":
            raise ValueError(f"elf is for {f.get_machine_arch()}, not a 32-bit Arm core.")
        sections: dict[str, int] = {}
        index_to_name: dict[int, str] = {}
        ram_total = 0
        for i, sec in enumerate(f.iter_sections()):
            index_to_name[i] = sec.name
            if not sec["sh_flags"] & SH_FLAGS.SHF_ALLOC or sec["sh_size"] == 0:
                continue
            sections[sec.name] = sections.get(sec.name, 0) + sec["sh_size"]
            addr = sec["sh_addr"]
            in_ram = (
                board.ram_origin <= addr < board.ram_end
                if board is not None
                else sec.name not in _FLASH_SECTIONS
            )
            if in_ram:
                ram_total += sec["sh_size"]
        flash_total = 0
        for seg in f.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_filesz"] == 0:
                continue
            if board is None or board.flash_origin <= seg["p_paddr"] < board.flash_end:
                flash_total += seg["p_filesz"]
        symbols: dict[str, Symbol] = {}
        symtab = f.get_section_by_name(".symtab")
        stack_top = stack_limit = None
        if symtab is not None:
            for sym in symtab.iter_symbols():
                if not sym.name or sym.name.startswith("$"):
                    continue
                kind = {"STT_FUNC": "function", "STT_OBJECT": "object"}.get(
                    sym["st_info"]["type"], "other"
                )
                shndx = sym["st_shndx"]
                section = index_to_name.get(shndx, "") if isinstance(shndx, int) else ""
                address = sym["st_value"] & ~1 if kind == "function" else sym["st_value"]
                new = Symbol(sym.name, address, sym["st_size"], kind, section)
                old = symbols.get(sym.name)
                # keep the global definition over a local one of the same name
                if old is None or (sym["st_info"]["bind"] == "STB_GLOBAL" and old.size <= new.size):
                    symbols[sym.name] = new
                if sym.name == "__stack_top__":
                    stack_top = sym["st_value"]
                elif sym.name == "__stack_limit__":
                    stack_limit = sym["st_value"]
    except ELFError as exc:
        raise ValueError(f"elf is not a readable ELF file: {exc}") from None
    stack = stack_top - stack_limit if stack_top is not None and stack_limit is not None else 0
    # the compiler's runtime (compiler_rt) exports functions under two names: count each once
    plain = {(s.address, s.size) for s in symbols.values() if not s.name.startswith("compiler_rt.")}
    for name in [n for n, s in symbols.items() if n.startswith("compiler_rt.")]:
        if (symbols[name].address, symbols[name].size) in plain:
            del symbols[name]
    return Sizes(sections, flash_total, ram_total, stack, symbols)
