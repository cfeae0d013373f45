"""Run firmware on a virtual Cortex-M4 and measure it: outputs, instructions, stack, cycles.

:class:`VirtualBoard` loads a :class:`~tinyml_course.mcu.build.Firmware` into the Unicorn CPU
emulator (QEMU's Arm core, compiled to host code on the fly), with flash and RAM where the
board's datasheet puts them, and runs the startup code up to ``main``. Each :meth:`~VirtualBoard.run`
then calls ``main`` again, like a firmware's main loop: the host writes inputs into global
variables by name, runs, and reads results back.

Two ways to run:

* **fast** (``count=False``): no hooks, the emulator translates each piece of code once and
  runs it at hundreds of millions of instructions per second. Use it for accuracy over a
  test set.
* **counting** (``count=True``): a hook on every *basic block* (a straight run of code ending
  in a branch) counts the exact number of instructions executed. Each block is decoded once
  (Thumb-2 length from its first halfword; classes with ``capstone``) and cached, so counting
  costs one Python call per block, not per instruction. It also splits the count at phase
  markers (:c:func:`tinyml_mark`, called by ``TINYML_LAYER_DONE(i)`` after each layer of a
  generated model) and gathers the instruction classes behind :func:`estimate`.

Every run paints the stack with a pattern first and reports the deepest word that changed:
the peak stack use, measured. Faults (a bad address, a write to flash, an undefined
instruction, a stack overflow, a run that never ends) raise :class:`EmulationError` with the
place in the C code.

What counts as an instruction: every instruction the core issues, including the ones an IT
block skips because their condition failed (on the Cortex-M4 they still take their cycle, as
a NOP). A per-instruction hook (``UC_HOOK_CODE``) does not see those, so it can report up to
three fewer per IT block; everywhere else the two counts agree.

Marker overhead: ``layer_instructions[i]`` counts from the end of marker ``i - 1`` (or the
start of ``main``) to the call of marker ``i``. It includes the call itself (about two
instructions: load the id, branch) but not the marker function's own four instructions; the
total, :attr:`RunResult.instructions`, counts everything.

Cycle estimate: see :func:`estimate`. Instructions are exact; cycles are an estimate.

Examples
--------
>>> from tinyml_course.mcu.build import build  # doctest: +SKIP
>>> fw = build({"main.c": "volatile int x; int main(void) { return x * 3; }"})  # doctest: +SKIP
>>> vb = VirtualBoard(fw)  # doctest: +SKIP
>>> vb.run(inputs={"x": np.int32([14])}).return_value  # doctest: +SKIP
42
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import io
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tinyml_course.mcu.board import Board, get_board
from tinyml_course.mcu.build import Firmware
from tinyml_course.mcu.sizes import Symbol

STACK_PATTERN = 0xDEADBEEF
DEFAULT_MAX_INSTRUCTIONS = 2_000_000_000

_EXCEPTIONS = {
    1: "Reset",
    2: "NMI",
    3: "HardFault",
    4: "MemManage fault",
    5: "BusFault",
    6: "UsageFault",
    11: "SVCall",
    12: "DebugMonitor",
    14: "PendSV",
    15: "SysTick",
}

# QEMU's exception numbers, as unicorn's interrupt hook reports them outside a handler
_CPU_EXCEPTIONS = {
    1: "undefined instruction (udf, __builtin_trap)",
    2: "supervisor call (svc): the virtual board has no operating system",
    3: "prefetch abort",
    4: "data abort",
    7: "breakpoint (bkpt)",
}

CLASSES = (
    "alu",
    "mac",
    "simd",
    "divide",
    "load",
    "store",
    "load_multiple",
    "store_multiple",
    "branch",
    "it",
    "float",
    "other",
)
"""Instruction classes of :attr:`RunResult.class_counts`.

``alu``: data processing (mov, add, shifts, logic, compare, extend, saturate, bit fields);
``mac``: multiplies and multiply-accumulates (MUL, MLA, SMULL, SMLABB, SMLAD, ...);
``simd``: the DSP extension's packed 8/16-bit operations (SXTB16, SADD16, SEL, PKHBT, ...);
``divide``: SDIV/UDIV; ``load``/``store``: single loads and stores (LDRD/STRD included);
``load_multiple``/``store_multiple``: LDM/POP, STM/PUSH; ``branch``: B, BL, BX, CBZ, TBB, ...;
``it``: IT (the condition prefix of Thumb-2); ``float``: VFP instructions; ``other``: hints,
barriers, system and breakpoint instructions.
"""


_TCG_BUFFER_BYTES = 128 * 1024 * 1024


class EmulationError(RuntimeError):
    """The program faulted or did not finish; ``pc`` and ``where`` say where it stopped."""

    def __init__(self, message: str, pc: int | None = None, where: str = "") -> None:
        super().__init__(message)
        self.pc = pc
        self.where = where


@dataclass(frozen=True)
class CycleTerms:
    """Counts behind a cycle estimate (see :func:`estimate`).

    Attributes
    ----------
    base : int
        Cycles of every instruction without branch refills and divides, with neighbouring
        single loads/stores pipelined.
    base_min : int
        As ``base`` with IT instructions folded (0 cycles).
    base_max : int
        As ``base`` without load/store pipelining (every single load/store 2 cycles).
    refills : int
        Pipeline refills: taken branches and other writes to the PC.
    divides : int
        SDIV/UDIV instructions (2-12 cycles each).
    """

    base: int
    base_min: int
    base_max: int
    refills: int
    divides: int


@dataclass(frozen=True)
class RunResult:
    """What one run of ``main`` produced and cost.

    Attributes
    ----------
    output : numpy.ndarray
        For the model harness, the ``int8`` output (``tinyml_output``); else empty.
    return_value : int
        ``main``'s return value.
    instructions : int or None
        Instructions ``main`` and everything it called issued (counting runs only); IT-block
        instructions whose condition failed count too (see the module notes).
    layer_instructions : tuple of int
        Instructions before each phase marker (see the module notes on marker overhead).
    marker_ids : tuple of int
        The id each marker passed to ``tinyml_mark``.
    stack_bytes : int
        Peak stack use, measured: the deepest stack word the run wrote.
    static_ram_bytes : int
        ``.data`` + ``.bss`` of the firmware.
    class_counts : dict[str, int]
        Instructions per class (:data:`CLASSES`), counting runs only.
    cycle_terms : CycleTerms or None
        What :func:`estimate` needs (counting runs only).
    board : str
        The board the firmware was built for (its clock prices the estimate).
    """

    output: np.ndarray
    return_value: int
    instructions: int | None
    layer_instructions: tuple[int, ...]
    marker_ids: tuple[int, ...]
    stack_bytes: int
    static_ram_bytes: int
    class_counts: dict[str, int] = field(default_factory=dict)
    cycle_terms: CycleTerms | None = None
    board: str = ""

    @property
    def ram_bytes(self) -> int:
        """Static RAM + measured peak stack: the RAM the run needed."""
        return self.static_ram_bytes + self.stack_bytes


@dataclass(frozen=True)
class CycleEstimate:
    """An ESTIMATE of the cycles a counted run takes on the real core.

    Attributes
    ----------
    cycles : int
        The estimate with the assumptions stated in ``assumptions``.
    milliseconds : float
        ``cycles`` at the board's clock.
    cycles_min, cycles_max : int
        The range the documented per-instruction ranges allow.
    clock_hz : int
        The clock used.
    assumptions : str
        What the estimate assumes (read it before quoting the number).
    """

    cycles: int
    milliseconds: float
    cycles_min: int
    cycles_max: int
    clock_hz: int
    assumptions: str


# ----------------------------------------------------------------------------- decoding


def _signed32(value: int) -> int:
    """A 32-bit register or memory word as a signed C ``int32_t``."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def thumb_instruction_count(code: bytes) -> int:
    """The number of Thumb-2 instructions in ``code`` (a basic block).

    A halfword whose top five bits are 0b11101, 0b11110 or 0b11111 starts a 32-bit
    instruction; any other starts a 16-bit one (Armv7-M Architecture Reference Manual, A5.1).

    Examples
    --------
    >>> thumb_instruction_count(bytes.fromhex("0020" "4ff00000"))  # movs r0,#0; mov.w r0,#0
    2
    """
    i = n = 0
    size = len(code)
    while i < size:
        i += 4 if i + 1 < size and (code[i + 1] >> 3) >= 0b11101 else 2
        n += 1
    return n


_ENDS_NONE, _ENDS_ALWAYS, _ENDS_COND = 0, 1, 2


@dataclass(frozen=True)
class _Block:
    n: int
    classes: tuple[int, ...]  # counts per CLASSES index
    base: int
    base_min: int
    base_max: int
    divides: int
    ends: int
    fallthrough: int


_SIMD = re.compile(
    r"^((S|U|Q|SH|UH|UQ)(ADD|SUB)(8|16)|(S|U|Q|SH|UH|UQ)(ASX|SAX)|[SU]XTA?B16|SEL|USADA?8|"
    r"[SU]SAT16|PKH(BT|TB))$"
)
_MAC = re.compile(
    r"^(MUL|MLA|MLS|[SU]MULL|[SU]MLAL|UMAAL|SMLA.*|SMLS.*|SMUL.*|SMM.*|SMUAD.*|SMUSD.*)$"
)
_LOAD = {"LDR", "LDRB", "LDRH", "LDRSB", "LDRSH", "LDREX", "LDREXB", "LDREXH", "LDRT",
         "LDRBT", "LDRHT", "LDRSBT", "LDRSHT"}  # fmt: skip
_STORE = {"STR", "STRB", "STRH", "STREX", "STREXB", "STREXH", "STRT", "STRBT", "STRHT"}
_LOAD_MULTIPLE = {"LDM", "LDMDB", "LDMIB", "LDMDA", "POP"}
_STORE_MULTIPLE = {"STM", "STMDB", "STMIB", "STMDA", "PUSH"}
_BRANCH = {"B", "BL", "BX", "BLX", "BXJ", "CBZ", "CBNZ", "TBB", "TBH"}
_OTHER = {"HINT", "NOP", "BKPT", "UDF", "WFI", "WFE", "SEV", "YIELD", "DMB", "DSB", "ISB",
          "MRS", "MSR", "CPS", "SVC", "CLREX", "PLD", "PLDW", "PLI", "DBG"}  # fmt: skip


class _Decoder:
    """Classifies the instructions of a basic block (capstone), with cycle costs."""

    def __init__(self) -> None:
        try:
            import capstone
            from capstone import arm_const
        except ImportError as exc:  # pragma: no cover - capstone is a dependency
            raise ImportError(
                "counting instruction classes needs capstone: pip install 'capstone>=5.0.1,<6'"
            ) from exc
        self.arm = arm_const
        self.md = capstone.Cs(
            capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS
        )
        self.md.detail = True
        self.names = {v: k[8:] for k, v in vars(arm_const).items() if k.startswith("ARM_INS_")}
        self.index = {c: i for i, c in enumerate(CLASSES)}

    def _class(self, name: str) -> str:
        if name in _LOAD or name in ("LDRD", "LDREXD"):
            return "load"
        if name in _STORE or name in ("STRD", "STREXD"):
            return "store"
        if name in _LOAD_MULTIPLE:
            return "load_multiple"
        if name in _STORE_MULTIPLE:
            return "store_multiple"
        if name in _BRANCH:
            return "branch"
        if name in ("SDIV", "UDIV"):
            return "divide"
        if name == "IT":
            return "it"
        if _MAC.match(name):
            return "mac"
        if _SIMD.match(name):
            return "simd"
        if name.startswith("V"):
            return "float"
        if name in _OTHER:
            return "other"
        return "alu"

    def block(self, address: int, code: bytes) -> _Block:
        arm = self.arm
        counts = [0] * len(CLASSES)
        base = base_min = base_max = divides = 0
        ends = _ENDS_NONE
        previous_single = False  # the previous instruction was a single load/store
        n = 0
        decoded = list(self.md.disasm(code, address))
        consumed = sum(i.size for i in decoded)
        for insn in decoded:
            n += 1
            name = self.names.get(insn.id, "")
            cls = self._class(name)
            counts[self.index[cls]] += 1
            conditional = insn.cc not in (arm.ARM_CC_AL, arm.ARM_CC_INVALID)
            ops = insn.operands
            writes_pc = False
            single = False
            if cls in ("load", "store"):
                if name in ("LDRD", "STRD", "LDREXD", "STREXD"):
                    cost = cost_max = 3  # 1 + N, N = 2 registers
                else:
                    single = True
                    immediate = not (
                        len(ops) > 1 and ops[-1].type == arm.ARM_OP_MEM and ops[-1].mem.index
                    )
                    if cls == "store" and immediate:
                        cost = 1  # stores with an immediate offset: 1 cycle
                    else:
                        cost = 1 if previous_single else 2  # pipelined after a load/store
                    cost_max = 2
                    writes_pc = (
                        cls == "load"
                        and ops
                        and ops[0].type == arm.ARM_OP_REG
                        and ops[0].reg == arm.ARM_REG_PC
                    )
            elif cls in ("load_multiple", "store_multiple"):
                regs = [o for o in ops if o.type == arm.ARM_OP_REG]
                if name not in ("PUSH", "POP") and regs:
                    regs = regs[1:]  # the base register
                cost = cost_max = 1 + len(regs)
                writes_pc = cls == "load_multiple" and any(o.reg == arm.ARM_REG_PC for o in regs)
            elif cls == "branch":
                cost = cost_max = 2 if name in ("TBB", "TBH") else 1
                writes_pc = True
            elif cls == "divide":
                cost = cost_max = 0  # counted apart: 2-12 cycles
                divides += 1
            else:
                cost = cost_max = 1
                writes_pc = (
                    cls == "alu"
                    and ops
                    and ops[0].type == arm.ARM_OP_REG
                    and ops[0].reg == arm.ARM_REG_PC
                )
            base += cost
            base_max += cost_max
            base_min += 0 if cls == "it" else cost
            previous_single = single
            if writes_pc:
                ends = _ENDS_COND if (conditional or name in ("CBZ", "CBNZ")) else _ENDS_ALWAYS
            else:
                ends = _ENDS_NONE
        if consumed < len(code):  # capstone stopped early (data, unknown encoding): count the rest
            rest = thumb_instruction_count(code[consumed:])
            n += rest
            counts[self.index["other"]] += rest
            base += rest
            base_min += rest
            base_max += rest
        return _Block(
            n, tuple(counts), base, base_min, base_max, divides, ends, address + len(code)
        )


# ----------------------------------------------------------------------------- the board


class VirtualBoard:
    """A firmware image loaded into an emulated Cortex-M4, ready to run ``main``.

    Parameters
    ----------
    firmware : Firmware
        From :func:`tinyml_course.mcu.build.build`.
    max_instructions : int
        A counting run that executes more instructions than this stops with
        :class:`EmulationError` (an endless loop, or a model far bigger than intended).
    max_seconds : float
        A fast run still going after this many seconds stops with :class:`EmulationError`
        (fast runs do not count, so their limit is time).

    Notes
    -----
    RAM keeps its contents from one run to the next, as on a chip whose main loop calls the
    same code again; :meth:`reset` restores the state right after startup. After a fault the
    board reloads itself before the next run.
    """

    def __init__(
        self,
        firmware: Firmware,
        *,
        max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
        max_seconds: float = 120.0,
    ) -> None:
        if not isinstance(firmware, Firmware):
            raise TypeError(
                f"firmware must be a Firmware from tinyml_course.mcu.build.build; got {type(firmware).__name__}."
            )
        if not isinstance(max_instructions, (int, np.integer)) or max_instructions < 1:
            raise ValueError(
                f"max_instructions must be a positive integer; got {max_instructions!r}."
            )
        if not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
            raise ValueError(f"max_seconds must be a positive number; got {max_seconds!r}.")
        self.firmware = firmware
        self.board: Board = get_board(firmware.board)
        self.max_instructions = int(max_instructions)
        self.max_seconds = float(max_seconds)
        self._over_limit = self._timed_out = False
        sym = firmware.sizes.symbols
        for needed in ("main", "tinyml_exit", "__stack_top__", "__stack_limit__", "__bss_end__"):
            if needed not in sym:
                raise ValueError(
                    f"the firmware has no symbol {needed!r}: was it built with "
                    "tinyml_course.mcu.build.build (which links the course's startup code)?"
                )
        self._main = sym["main"].address
        self._exit = sym["tinyml_exit"].address
        # the linker drops the marker function and variable when nothing calls tinyml_mark
        self._marker = sym["tinyml_marker"].address if "tinyml_marker" in sym else None
        self._mark_fn = sym["tinyml_mark"].address if "tinyml_mark" in sym else None
        self._stack_top = sym["__stack_top__"].address
        self._stack_limit = sym["__stack_limit__"].address
        self._guard = (sym["__bss_end__"].address + 3) & ~3
        self._pattern_stack = np.full(
            (self._stack_top - self._stack_limit) // 4, STACK_PATTERN, "<u4"
        )
        self._pattern_guard = np.full(
            max(0, self._stack_limit - self._guard) // 4, STACK_PATTERN, "<u4"
        )
        self._decoder: _Decoder | None = None
        self._ninstr: dict[tuple[int, int], int] = {}
        self._blocks: dict[tuple[int, int], _Block] = {}
        self._functions: list[Symbol] | None = None
        self._lines: list[tuple[int, str]] | None = None
        self._load()

    # -- setup -------------------------------------------------------------------------

    def _load(self) -> None:
        from elftools.elf.elffile import ELFFile
        from unicorn import (
            UC_ARCH_ARM,
            UC_HOOK_INTR,
            UC_HOOK_MEM_INVALID,
            UC_MODE_MCLASS,
            UC_MODE_THUMB,
            UC_PROT_ALL,
            UC_PROT_EXEC,
            UC_PROT_READ,
            Uc,
        )
        from unicorn.arm_const import UC_CPU_ARM_CORTEX_M4

        b = self.board
        uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M4)
        # unicorn reserves 1 GiB for translated code by default; a firmware of a few hundred KB
        # needs a fraction of that, and a process under an address-space limit (the grading
        # sandbox, with TensorFlow loaded) cannot reserve it at all
        uc.ctl_set_tcg_buffer_size(_TCG_BUFFER_BYTES)
        uc.mem_map(b.flash_origin, b.flash_bytes, UC_PROT_READ | UC_PROT_EXEC)
        uc.mem_map(b.ram_origin, b.ram_bytes, UC_PROT_ALL)
        elf = ELFFile(io.BytesIO(self.firmware.elf))
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_filesz"] == 0:
                continue
            start, data = seg["p_paddr"], seg.data()
            if not (b.flash_origin <= start and start + len(data) <= b.flash_end):
                raise EmulationError(
                    f"the firmware loads {len(data)} bytes at {start:#x}, outside the "
                    f"{b.name}'s flash ({b.flash_origin:#x}-{b.flash_end:#x}): "
                    "was it linked for another board?"
                )
            uc.mem_write(start, data)
        self._events: list[tuple] = []
        uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        uc.hook_add(UC_HOOK_MEM_INVALID, self._on_invalid)
        self.uc = uc
        vector = bytes(uc.mem_read(b.flash_origin, 8))
        sp, reset = int.from_bytes(vector[:4], "little"), int.from_bytes(vector[4:], "little")
        if sp != self._stack_top or not reset & 1:
            raise EmulationError(
                f"the vector table at {b.flash_origin:#x} is not the course's (initial SP "
                f"{sp:#x}, reset {reset:#x})."
            )
        from unicorn.arm_const import UC_ARM_REG_SP

        uc.reg_write(UC_ARM_REG_SP, sp)
        self._start(reset, self._main, "startup (Reset_Handler, before main)")
        self._ram_image = bytes(uc.mem_read(b.ram_origin, self._stack_limit - b.ram_origin))
        self._broken = False

    def _on_interrupt(self, uc, intno, _user) -> None:
        from unicorn.arm_const import UC_ARM_REG_IPSR, UC_ARM_REG_PC, UC_ARM_REG_SP

        pc = uc.reg_read(UC_ARM_REG_PC)
        ipsr = uc.reg_read(UC_ARM_REG_IPSR) & 0x1FF
        stacked = None
        if ipsr:
            sp = uc.reg_read(UC_ARM_REG_SP)
            if self.board.ram_origin <= sp and sp + 32 <= self.board.ram_end:
                stacked = int.from_bytes(bytes(uc.mem_read(sp + 24, 4)), "little")
        self._events.append(("interrupt", intno, pc, ipsr, stacked))
        uc.emu_stop()

    def _on_invalid(self, uc, access, address, size, value, _user) -> bool:
        from unicorn.arm_const import UC_ARM_REG_PC, UC_ARM_REG_SP

        pc, sp = uc.reg_read(UC_ARM_REG_PC), uc.reg_read(UC_ARM_REG_SP)
        self._events.append(("memory", access, address, size, pc, sp))
        return False

    # -- where is the PC ---------------------------------------------------------------

    def where(self, pc: int) -> str:
        """``function+offset (file.c:line)`` for an address in the code."""
        if self._functions is None:
            self._functions = sorted(
                (s for s in self.firmware.sizes.symbols.values() if s.kind == "function"),
                key=lambda s: s.address,
            )
        starts = [s.address for s in self._functions]
        i = bisect.bisect_right(starts, pc) - 1
        text = f"{pc:#x}"
        if i >= 0:
            f = self._functions[i]
            if pc < f.address + max(f.size, 2):
                text = f"{f.name}+{pc - f.address:#x}"
        line = self._line(pc)
        return f"{text} ({line})" if line else text

    def _line(self, pc: int) -> str:
        if self._lines is None:
            self._lines = []
            starts = {
                s.address for s in self.firmware.sizes.symbols.values() if s.kind == "function"
            }
            try:
                from elftools.elf.elffile import ELFFile

                elf = ELFFile(io.BytesIO(self.firmware.elf))
                if elf.has_dwarf_info():
                    dwarf = elf.get_dwarf_info()
                    for cu in dwarf.iter_CUs():
                        program = dwarf.line_program_for_CU(cu)
                        if program is None:
                            continue
                        files = program["file_entry"]
                        base = 0 if program.header["version"] >= 5 else 1
                        sequence: list[tuple[int, str]] = []
                        for entry in program.get_entries():
                            st = entry.state
                            if st is None:
                                continue
                            if st.end_sequence:
                                # a function the linker dropped keeps its lines at address 0
                                if sequence and sequence[0][0] in starts:
                                    self._lines.extend(sequence)
                                sequence = []
                                continue
                            index = st.file - base
                            if st.line and 0 <= index < len(files):
                                name = files[index].name.decode(errors="replace")
                                sequence.append((st.address, f"{name}:{st.line}"))
                self._lines.sort()
            except Exception:  # debug info is a nicety: never fail a report over it
                self._lines = []
        i = bisect.bisect_right(self._lines, (pc, "\uffff")) - 1
        return self._lines[i][1] if i >= 0 and pc - self._lines[i][0] < 64 else ""

    # -- memory ------------------------------------------------------------------------

    def symbol(self, name: str) -> Symbol:
        """The firmware's symbol ``name`` (see :meth:`Firmware.symbol`)."""
        return self.firmware.symbol(name)

    def read(
        self, name: str, dtype: np.dtype | type | str = np.int8, count: int | None = None
    ) -> np.ndarray:
        """Read the variable ``name`` as an array of ``dtype`` (little-endian, as the core).

        Parameters
        ----------
        name : str
            A global variable of the firmware.
        dtype : numpy dtype
            Element type; default ``int8``.
        count : int, optional
            Number of elements; default all of the variable.
        """
        sym = self.symbol(name)
        dt = np.dtype(dtype).newbyteorder("<")
        if count is None:
            count = sym.size // dt.itemsize
        if (
            not isinstance(count, (int, np.integer))
            or count < 0
            or count * dt.itemsize > max(sym.size, 0)
        ):
            raise ValueError(
                f"count={count!r} elements of {dt} ({count * dt.itemsize if isinstance(count, int) else '?'} "
                f"bytes) do not fit in {name!r} ({sym.size} bytes)."
            )
        data = bytes(self.uc.mem_read(sym.address, int(count) * dt.itemsize))
        return np.frombuffer(data, dtype=dt).astype(dt.newbyteorder("="))

    def write(self, name: str, values, dtype: np.dtype | type | str | None = None) -> None:
        """Write ``values`` into the variable ``name``, from its start.

        Parameters
        ----------
        name : str
            A global variable of the firmware (in RAM).
        values : array-like
            The data; a numpy array keeps its dtype, anything else becomes ``dtype``.
        dtype : numpy dtype, optional
            Convert to this type first (values out of its range are refused); default the
            array's own dtype, or ``int8`` for lists.
        """
        sym = self.symbol(name)
        if not (self.board.ram_origin <= sym.address < self.board.ram_end):
            raise ValueError(
                f"{name!r} is in flash ({sym.address:#x}): a `const` variable cannot be written "
                "at run time; drop `const` to make it a RAM buffer."
            )
        arr = np.asarray(values)
        if dtype is not None:
            target = np.dtype(dtype)
        elif isinstance(values, (np.ndarray, np.generic)):
            target = arr.dtype
        else:
            target = np.dtype(np.int8)
        if arr.dtype.kind not in "iubf":
            raise TypeError(f"values for {name!r} must be numbers; got dtype {arr.dtype}.")
        if arr.dtype != target:
            if target.kind in "iu":
                if (
                    arr.dtype.kind == "f"
                    and arr.size
                    and not np.all(np.isfinite(arr) & (arr == np.round(arr)))
                ):
                    raise ValueError(
                        f"values for {name!r} are not whole numbers; round or quantize them "
                        f"before writing them as {target}."
                    )
                info = np.iinfo(target)
                if arr.size and (arr.min() < info.min or arr.max() > info.max):
                    raise ValueError(
                        f"values for {name!r} range {arr.min()}..{arr.max()}, outside {target} "
                        f"({info.min}..{info.max}); clip or quantize them first."
                    )
            arr = arr.astype(target)
        data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        if len(data) > sym.size:
            raise ValueError(
                f"{len(data)} bytes ({arr.size} x {arr.dtype}) do not fit in {name!r} ({sym.size} bytes)."
            )
        self.uc.mem_write(sym.address, data)

    def reset(self) -> None:
        """Restore RAM to its state right after startup (``.data`` initialised, ``.bss`` zero)."""
        if self._broken:
            self._load()
        else:
            self.uc.mem_write(self.board.ram_origin, self._ram_image)

    # -- running -----------------------------------------------------------------------

    def _start(self, begin: int, until: int, what: str, *, counting: bool = False) -> None:
        """Run from ``begin`` until the PC reaches ``until``; translate every failure.

        Fast runs are stopped by a timer thread after ``max_seconds`` (unicorn's own
        instruction limit would instrument every instruction and halve the speed, its
        timeout busy-waits on a second core); counting runs stop at ``max_instructions`` in
        the block hook.
        """
        from unicorn import UcError
        from unicorn.arm_const import UC_ARM_REG_PC

        uc = self.uc
        self._events.clear()
        self._over_limit = self._timed_out = False
        timer = None
        if not counting:
            timer = threading.Timer(self.max_seconds, self._stop_on_timeout)
            timer.daemon = True
            timer.start()
        try:
            uc.emu_start(begin | 1, until)
            error = None
        except UcError as exc:
            error = exc
        finally:
            if timer is not None:
                timer.cancel()
        pc = uc.reg_read(UC_ARM_REG_PC)
        if error is None and not self._events and pc == until and not self._timed_out:
            return
        self._broken = True
        raise self._fault(error, pc, what)

    def _stop_on_timeout(self) -> None:
        self._timed_out = True
        with contextlib.suppress(Exception):
            self.uc.emu_stop()

    def _fault(self, error, pc: int, what: str) -> EmulationError:
        from unicorn import (
            UC_MEM_FETCH_PROT,
            UC_MEM_FETCH_UNMAPPED,
            UC_MEM_READ_PROT,
            UC_MEM_READ_UNMAPPED,
            UC_MEM_WRITE_PROT,
            UC_MEM_WRITE_UNMAPPED,
        )

        b = self.board
        memory_map = (
            f"the {b.name} has flash at {b.flash_origin:#x}-{b.flash_end - 1:#x} (read-only) and RAM at "
            f"{b.ram_origin:#x}-{b.ram_end - 1:#x}; the virtual board has no peripherals"
        )
        for event in self._events:
            if event[0] == "memory":
                _, access, address, size, at, sp = event
                kind = {
                    UC_MEM_WRITE_UNMAPPED: "write to unmapped address",
                    UC_MEM_READ_UNMAPPED: "read from unmapped address",
                    UC_MEM_FETCH_UNMAPPED: "jump to unmapped address",
                    UC_MEM_WRITE_PROT: "write to read-only flash at",
                    UC_MEM_READ_PROT: "read from protected address",
                    UC_MEM_FETCH_PROT: "jump to non-executable address",
                }.get(access, "invalid access at")
                place = (
                    self.where(at)
                    if access not in (UC_MEM_FETCH_UNMAPPED, UC_MEM_FETCH_PROT)
                    else "a bad function pointer or return address"
                )
                hint = " (a `const` variable lives in flash)" if access == UC_MEM_WRITE_PROT else ""
                if sp < self._stack_limit:
                    hint += (
                        f" (the stack pointer {sp:#x} is below the stack's limit "
                        f"{self._stack_limit:#x}: a stack overflow)"
                    )
                return EmulationError(
                    f"{what}: {kind} {address:#x} ({size} bytes) at {place}{hint}; {memory_map}. "
                    "An index past the end of an array, or a bad pointer?",
                    at,
                    place,
                )
            if event[0] == "interrupt":
                _, intno, at, ipsr, stacked = event
                if ipsr:
                    name = _EXCEPTIONS.get(ipsr, f"exception {ipsr}")
                    fault_pc = stacked if stacked is not None else at
                    place = self.where(fault_pc)
                    return EmulationError(
                        f"{what}: {name} (exception {ipsr}); the faulting instruction is at "
                        f"{place}. Unaligned LDRD/LDM, a division trap or a bad pointer?",
                        fault_pc,
                        place,
                    )
                place = self.where(at)
                name = _CPU_EXCEPTIONS.get(intno, f"CPU exception {intno}")
                return EmulationError(f"{what}: {name} at {place}.", at, place)
        if error is not None:
            place = self.where(pc)
            text = str(error)
            if "INSN_INVALID" in text:
                text = "undefined instruction (a __builtin_trap(), `udf`, or a jump into data)"
            return EmulationError(f"{what}: {text} at {place}.", pc, place)
        place = self.where(pc)
        limit = (
            f"max_instructions={self.max_instructions:,}"
            if self._over_limit
            else f"max_seconds={self.max_seconds:g}"
        )
        return EmulationError(
            f"{what}: did not finish within {limit}; stopped at {place}. An endless loop? "
            "Pass a larger limit to VirtualBoard if the program is just long.",
            pc,
            place,
        )

    def _paint(self) -> None:
        uc = self.uc
        uc.mem_write(self._stack_limit, self._pattern_stack.tobytes())
        if self._pattern_guard.size:
            uc.mem_write(self._guard, self._pattern_guard.tobytes())

    def _stack_used(self) -> int:
        uc = self.uc
        words = np.frombuffer(
            bytes(uc.mem_read(self._stack_limit, self._pattern_stack.nbytes)), "<u4"
        )
        changed = np.flatnonzero(words != STACK_PATTERN)
        guard_hit = False
        if self._pattern_guard.size:
            guard = np.frombuffer(
                bytes(uc.mem_read(self._guard, self._pattern_guard.nbytes)), "<u4"
            )
            guard_hit = bool((guard != STACK_PATTERN).any())
        if guard_hit or (changed.size and changed[0] == 0):
            self._broken = True
            raise EmulationError(
                f"stack overflow: the run used all {self.board.stack_bytes:,} bytes of stack the "
                f"{self.board.name} build reserves (board.stack_bytes) and wrote below it, into "
                "the free RAM or .bss (or a pointer wrote there). Use less stack (large local "
                "arrays -> static buffers, no deep recursion) or a board with a larger stack_bytes."
            )
        if not changed.size:
            return 0
        return self._stack_top - (self._stack_limit + 4 * int(changed[0]))

    def run(self, inputs: Mapping[str, object] | None = None, *, count: bool = False) -> RunResult:
        """Call ``main`` once and return what it produced and cost.

        Parameters
        ----------
        inputs : Mapping[str, array-like], optional
            Variables to write first (name -> values, as :meth:`write`).
        count : bool
            Count instructions (exactly), markers and instruction classes; slower than the
            default fast run, still millions of instructions per second.

        Returns
        -------
        RunResult

        Raises
        ------
        EmulationError
            On a fault, a stack overflow or a run longer than ``max_instructions``.
        """
        from unicorn.arm_const import UC_ARM_REG_LR, UC_ARM_REG_R0, UC_ARM_REG_SP

        if self._broken:
            self._load()
        for name, values in (inputs or {}).items():
            self.write(name, values)
        self._paint()
        uc = self.uc
        uc.reg_write(UC_ARM_REG_SP, self._stack_top)
        uc.reg_write(UC_ARM_REG_LR, self._exit | 1)
        uc.reg_write(UC_ARM_REG_R0, 0)
        if count:
            counted = self._run_counting()
        else:
            self._start(self._main, self._exit, "running main")
            counted = None
        stack = self._stack_used()
        value = _signed32(uc.reg_read(UC_ARM_REG_R0))
        static = self.firmware.sizes.static_ram_bytes
        empty = np.zeros(0, np.int8)
        name = self.board.name
        if counted is None:
            return RunResult(empty, value, None, (), (), stack, static, {}, None, name)
        total, layers, ids, classes, terms = counted
        return RunResult(empty, value, total, layers, ids, stack, static, classes, terms, name)

    def _run_counting(self):
        from unicorn import UC_HOOK_BLOCK, UC_HOOK_MEM_WRITE

        uc = self.uc
        ninstr = self._ninstr
        transitions: dict[tuple, int] = {}
        state: list = [None, 0]  # previous block, instructions so far
        marks: list[tuple[int, int, int]] = []

        limit = self.max_instructions

        def on_block(uc_, address, size, _user):
            key = (address, size)
            n = ninstr.get(key)
            if n is None:
                n = ninstr[key] = thumb_instruction_count(bytes(uc_.mem_read(address, size)))
            t = (state[0], key)
            transitions[t] = transitions.get(t, 0) + 1
            state[0] = key
            state[1] += n
            if state[1] > limit:
                self._over_limit = True
                uc_.emu_stop()

        def on_marker(uc_, _access, _address, _size, value, _user):
            key = state[0]
            inside = key is not None and key[0] == self._mark_fn
            n = ninstr[key] if inside else 0
            marks.append((_signed32(value), state[1] - n, n))

        hooks = [uc.hook_add(UC_HOOK_BLOCK, on_block)]
        if self._marker is not None:
            hooks.append(
                uc.hook_add(UC_HOOK_MEM_WRITE, on_marker, None, self._marker, self._marker + 3)
            )
        uc.ctl_flush_tb()  # code translated before has no hooks in it
        try:
            self._start(self._main, self._exit, "running main (counting)", counting=True)
        finally:
            for h in hooks:
                uc.hook_del(h)
            # unicorn drops deleted hooks at the end of a run: run zero instructions, then
            # retranslate, so fast runs no longer carry the hooks' instrumentation
            with contextlib.suppress(Exception):
                uc.emu_start(self._exit | 1, self._exit)
            uc.ctl_flush_tb()
        total, last = state[1], state[0]
        if last is not None and last[0] == self._exit:
            # defensive: unicorn stops before entering the exit stub (bkpt; b .), but if a
            # version ever reported its block, the stub did not execute and must not count
            total -= ninstr[last]
            into_exit = [k for k in transitions if k[1] == last]
            for key in into_exit:
                del transitions[key]
            last = into_exit[-1][0] if into_exit else None  # the block that returned from main
        layers, ids, previous_end = [], [], 0
        for mark_id, before, body in marks:
            layers.append(before - previous_end)
            ids.append(mark_id)
            previous_end = before + body
        classes, terms = self._classify(transitions, last)
        return total, tuple(layers), tuple(ids), classes, terms

    def _block(self, key: tuple[int, int]) -> _Block:
        info = self._blocks.get(key)
        if info is None:
            if self._decoder is None:
                self._decoder = _Decoder()
            info = self._blocks[key] = self._decoder.block(key[0], bytes(self.uc.mem_read(*key)))
        return info

    def _classify(self, transitions: dict, last) -> tuple[dict[str, int], CycleTerms]:
        counts = np.zeros(len(CLASSES), np.int64)
        base = base_min = base_max = refills = divides = 0
        for (previous, key), c in transitions.items():
            info = self._block(key)
            counts += np.asarray(info.classes, np.int64) * c
            base += info.base * c
            base_min += info.base_min * c
            base_max += info.base_max * c
            divides += info.divides * c
            if previous is not None:
                p = self._block(previous)
                if p.ends == _ENDS_ALWAYS or (p.ends == _ENDS_COND and key[0] != p.fallthrough):
                    refills += c
        if last is not None and self._block(last).ends == _ENDS_ALWAYS:
            refills += 1  # main's return to the exit stub
        classes = {name: int(v) for name, v in zip(CLASSES, counts, strict=True)}
        return classes, CycleTerms(
            int(base), int(base_min), int(base_max), int(refills), int(divides)
        )

    # -- the model harness -------------------------------------------------------------

    def _check_model(self) -> tuple[Symbol, Symbol]:
        if self.firmware.harness != "model":
            raise ValueError(
                "this firmware has no model harness: build it with harness='model' "
                "(tinyml_course.mcu.build.build(..., harness='model'))."
            )
        return self.symbol("tinyml_input"), self.symbol("tinyml_output")

    def infer(self, x, *, count: bool = False) -> RunResult:
        """Run the model harness on one int8 input; ``output`` is the model's int8 output.

        Parameters
        ----------
        x : array-like of int8
            One input, ``MODEL_INPUT_SIZE`` values (any shape; flattened in C order).
        count : bool
            Count instructions, layers (markers) and classes (see :meth:`run`).
        """
        inp, out = self._check_model()
        arr = np.asarray(x)
        if arr.size != inp.size:
            raise ValueError(
                f"x has {arr.size} values; the model takes MODEL_INPUT_SIZE={inp.size} int8 values."
            )
        if arr.dtype != np.int8:
            if arr.dtype.kind not in "iu" or arr.min() < -128 or arr.max() > 127:
                raise ValueError(
                    f"x must be int8 (quantized) values; got {arr.dtype} in "
                    f"{arr.min()}..{arr.max()}. Quantize the input first."
                )
            arr = arr.astype(np.int8)
        result = self.run({"tinyml_input": arr.reshape(-1)}, count=count)
        output = self.read("tinyml_output", np.int8, out.size)
        return dataclasses.replace(result, output=output)

    def infer_batch(self, xs) -> np.ndarray:
        """Outputs for many inputs (fast runs, no counting): an ``(n, MODEL_OUTPUT_SIZE)`` int8 array.

        Parameters
        ----------
        xs : array-like
            ``n`` inputs: shape ``(n, ...)`` with ``MODEL_INPUT_SIZE`` int8 values each.
        """
        inp, out = self._check_model()
        arr = np.asarray(xs)
        if arr.ndim < 1 or arr.size != arr.shape[0] * inp.size:
            raise ValueError(
                f"xs must hold n inputs of MODEL_INPUT_SIZE={inp.size} values each, shape (n, ...); "
                f"got shape {arr.shape}."
            )
        if arr.dtype != np.int8:
            if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < -128 or arr.max() > 127)):
                raise ValueError(f"xs must be int8 (quantized) values; got {arr.dtype}.")
            arr = arr.astype(np.int8)
        flat = np.ascontiguousarray(arr.reshape(arr.shape[0], -1))
        results = np.empty((flat.shape[0], out.size), np.int8)
        uc = self.uc
        for i, row in enumerate(flat):
            if self._broken:
                self._load()
            uc.mem_write(inp.address, row.tobytes())
            self._run_fast()
            results[i] = np.frombuffer(bytes(uc.mem_read(out.address, out.size)), np.int8)
        return results

    def _run_fast(self) -> None:
        from unicorn.arm_const import UC_ARM_REG_LR, UC_ARM_REG_SP

        self._paint()
        self.uc.reg_write(UC_ARM_REG_SP, self._stack_top)
        self.uc.reg_write(UC_ARM_REG_LR, self._exit | 1)
        self._start(self._main, self._exit, "running main")
        self._stack_used()


def estimate(
    result: RunResult,
    board: str | Board | None = None,
    *,
    refill_cycles: int = 1,
    divide_cycles: int = 7,
) -> CycleEstimate:
    """ESTIMATE the cycles of a counted run on a real Cortex-M4 (not a measurement).

    Each instruction gets the cycle count of the Cortex-M4 Technical Reference Manual
    (Arm DDI 0439, "Cortex-M4 instructions", table 3-1): data processing, multiplies and
    the DSP extension's MACs (SMLAD, ...) 1 cycle; single loads 2, or 1 when they follow
    another single load/store (pipelined); stores with an immediate offset 1; LDRD/STRD 3;
    LDM/STM/PUSH/POP 1 + N registers; branches 1, plus a pipeline refill of P cycles when
    taken (the emulator sees which conditional branches were taken); SDIV/UDIV 2-12.

    Parameters
    ----------
    result : RunResult
        From a counting run (``count=True``).
    board : str or Board, optional
        For the clock; default the board the run's firmware was built for.
    refill_cycles : int
        P, the refill after a taken branch (the manual: 1 to 3); default 1.
    divide_cycles : int
        Cycles per divide (the manual: 2 to 12, by operand size); default 7.

    Returns
    -------
    CycleEstimate
        ``cycles_min``/``cycles_max`` bound the estimate with P = 1/3, divides 2/12, IT
        folded or not, and load/store pipelining or none.
    """
    if not isinstance(result, RunResult):
        raise TypeError(f"result must be a RunResult; got {type(result).__name__}.")
    if result.cycle_terms is None:
        raise ValueError(
            "result has no instruction classes: run with count=True to estimate cycles."
        )
    if refill_cycles not in (1, 2, 3):
        raise ValueError(
            f"refill_cycles must be 1, 2 or 3 (the manual's range); got {refill_cycles!r}."
        )
    if not isinstance(divide_cycles, int) or not 2 <= divide_cycles <= 12:
        raise ValueError(f"divide_cycles must be an integer in 2..12; got {divide_cycles!r}.")
    b = get_board(board if board is not None else (result.board or None) or get_board())
    t = result.cycle_terms
    cycles = t.base + refill_cycles * t.refills + divide_cycles * t.divides
    low = t.base_min + 1 * t.refills + 2 * t.divides
    high = t.base_max + 3 * t.refills + 12 * t.divides
    assumptions = (
        f"ESTIMATE, not a measurement: {result.instructions:,} instructions (exact, emulated) "
        f"priced with the Cortex-M4 TRM (Arm DDI 0439) cycle counts at {b.clock_mhz:g} MHz "
        f"({b.name}). Assumes zero flash wait states, no cache or bus contention, no "
        f"interrupts; branch refill P = {refill_cycles} cycle(s) per taken branch "
        f"({t.refills:,} refills); divides {divide_cycles} cycles ({t.divides:,} divides); "
        "neighbouring single loads/stores pipelined; IT 1 cycle. Range "
        f"{low:,}-{high:,} cycles for P 1-3, divides 2-12, with/without pipelining."
    )
    return CycleEstimate(
        int(cycles), cycles / b.clock_hz * 1e3, int(low), int(high), b.clock_hz, assumptions
    )


def disassemble(firmware: Firmware, function: str) -> str:
    """The Thumb-2 assembly of ``function`` (address, mnemonic, operands), one per line.

    Parameters
    ----------
    firmware : Firmware
        A build.
    function : str
        A function's name, e.g. ``"dot"``.
    """
    import capstone

    sym = firmware.symbol(function)
    if sym.kind != "function":
        raise ValueError(f"{function!r} is a {sym.kind}, not a function.")
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(firmware.elf))
    for seg in elf.iter_segments():
        if (
            seg["p_type"] == "PT_LOAD"
            and seg["p_vaddr"] <= sym.address < seg["p_vaddr"] + seg["p_filesz"]
        ):
            offset = sym.address - seg["p_vaddr"]
            code = seg.data()[offset : offset + sym.size]
            break
    else:
        raise ValueError(f"{function!r} has no code in the image.")
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    return "\n".join(
        f"{i.address:08x}  {i.mnemonic:<8} {i.op_str}" for i in md.disasm(code, sym.address)
    )
