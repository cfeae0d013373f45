"""The virtual Cortex-M4 board: build with zig cc, run in unicorn, count, measure, fail clearly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tinyml_course.mcu.board import BOARDS, Board, get_board
from tinyml_course.mcu.build import BuildError, build, emit_project, linker_script
from tinyml_course.mcu.emulator import (
    CLASSES,
    EmulationError,
    VirtualBoard,
    disassemble,
    estimate,
    thumb_instruction_count,
)

DOT = r"""
#include <stdint.h>
#ifdef TINYML_SIMD
#include <arm_acle.h>
#endif
#define N 256
__attribute__((aligned(4))) int8_t a[N];
__attribute__((aligned(4))) int8_t b[N];

__attribute__((noinline)) int32_t dot(const int8_t *x, const int8_t *y, int n) {
    int32_t acc = 0;
#ifdef TINYML_SIMD
    for (int i = 0; i < n; i += 4) {          /* 4 int8 pairs per step, 2 SMLADs */
        int32_t u, v;
        __builtin_memcpy(&u, x + i, 4);
        __builtin_memcpy(&v, y + i, 4);
        acc = __smlad(__sxtb16(u), __sxtb16(v), acc);
        acc = __smlad(__sxtb16(__ror(u, 8)), __sxtb16(__ror(v, 8)), acc);
    }
#else
    for (int i = 0; i < n; i++) {
        acc += x[i] * y[i];
    }
#endif
    return acc;
}

int main(void) { return dot(a, b, N); }
"""


@pytest.fixture(scope="module")
def dot_plain():
    return build({"dot.c": DOT})


@pytest.fixture(scope="module")
def dot_simd():
    return build({"dot.c": DOT}, simd=True)


@pytest.fixture()
def vectors():
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, 256).astype(np.int8)
    b = rng.integers(-128, 128, 256).astype(np.int8)
    return a, b, int(a.astype(np.int64) @ b.astype(np.int64))


# --------------------------------------------------------------------------- boards


def test_board_catalogue():
    nano = get_board()
    assert nano.name == "nRF52840" and nano.device == "Arduino Nano 33 BLE Sense"
    assert (nano.flash_origin, nano.flash_bytes) == (0, 1024 * 1024)
    assert (nano.ram_origin, nano.ram_bytes, nano.clock_hz) == (0x2000_0000, 256 * 1024, 64_000_000)
    assert get_board("stm32f411").flash_origin == 0x0800_0000
    assert get_board(nano) is nano
    with pytest.raises(ValueError, match="nRF52840"):
        get_board("esp32")
    with pytest.raises(ValueError, match="stack_bytes"):
        Board("x", None, "cortex-m4", 0, 4096, 0x2000_0000, 4096, 1, 8192, "test")
    assert "RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 256K" in linker_script("nRF52840")
    assert set(BOARDS) == {"nRF52840", "STM32F411"}


# --------------------------------------------------------------------------- running


@pytest.mark.parametrize("board", ["nRF52840", "STM32F411"])
def test_dot_product_returns_the_right_value(board, vectors):
    a, b, expected = vectors
    vb = VirtualBoard(build({"dot.c": DOT}, board=board))
    result = vb.run({"a": a, "b": b})
    assert result.return_value == expected
    assert result.instructions is None and result.board == board
    counted = vb.run(count=True)  # RAM keeps the inputs between runs
    assert counted.return_value == expected and counted.instructions > 256
    np.testing.assert_array_equal(vb.read("a"), a)


def _per_instruction_count(vb: VirtualBoard, inputs) -> dict[int, int]:
    from unicorn import UC_HOOK_CODE

    seen: dict[int, int] = {}

    def every_instruction(uc, address, size, user):
        seen[address] = seen.get(address, 0) + 1

    vb.uc.hook_add(UC_HOOK_CODE, every_instruction)
    vb.uc.ctl_flush_tb()
    vb.run(inputs)
    return seen


def test_block_count_equals_per_instruction_count():
    src = r"""
    #include <stdint.h>
    #define N 64
    int8_t a[N], b[N];
    __attribute__((noinline)) int32_t dot(void) {
        int32_t acc = 0;
        for (int i = 0; i < N; i++) acc += a[i] * b[i];
        return acc;
    }
    int main(void) { return dot() + dot(); }
    """
    fw = build({"count.c": src})
    assert " it" not in disassemble(fw, "dot")  # no IT blocks: the two counts must agree
    rng = np.random.default_rng(2)
    inputs = {n: rng.integers(-128, 128, 64).astype(np.int8) for n in ("a", "b")}
    counted = VirtualBoard(fw).run(inputs, count=True)
    seen = _per_instruction_count(VirtualBoard(fw), inputs)
    assert counted.instructions == sum(seen.values())
    assert sum(counted.class_counts.values()) == counted.instructions
    assert set(counted.class_counts) == set(CLASSES)
    assert counted.class_counts["mac"] >= 64  # one multiply-accumulate per element


def test_block_count_differs_only_by_skipped_it_instructions(dot_plain, vectors):
    import capstone

    a, b, _ = vectors
    vb = VirtualBoard(dot_plain)
    counted = vb.run({"a": a, "b": b}, count=True)
    seen = _per_instruction_count(VirtualBoard(dot_plain), {"a": a, "b": b})
    md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    listing = list(
        md.disasm(
            bytes(vb.uc.mem_read(vb.symbol("dot").address, vb.symbol("dot").size)),
            vb.symbol("dot").address,
        )
    )
    in_it_block = set()
    for i, insn in enumerate(listing):
        if insn.mnemonic.startswith("it"):
            in_it_block.update(x.address for x in listing[i + 1 : i + len(insn.mnemonic)])
    skipped = counted.instructions - sum(seen.values())
    assert 0 <= skipped <= 3 * len(in_it_block)
    assert counted.return_value == vectors[2]


def test_simd_dot_product_matches_and_needs_fewer_instructions(dot_plain, dot_simd, vectors):
    a, b, expected = vectors
    plain = VirtualBoard(dot_plain).run({"a": a, "b": b}, count=True)
    simd = VirtualBoard(dot_simd).run({"a": a, "b": b}, count=True)
    assert plain.return_value == simd.return_value == expected
    assert simd.instructions < 0.6 * plain.instructions
    assert simd.class_counts["simd"] >= 256 // 2  # SXTB16: 4 per 4 elements
    assert "smlad" in disassemble(dot_simd, "dot")
    assert "smlad" not in disassemble(dot_plain, "dot")
    fast, slow = estimate(simd), estimate(plain)
    assert fast.cycles < slow.cycles


def test_cycle_estimate_is_labelled_and_bounded(dot_plain, vectors):
    a, b, _ = vectors
    result = VirtualBoard(dot_plain).run({"a": a, "b": b}, count=True)
    est = estimate(result)
    assert est.cycles_min <= est.cycles <= est.cycles_max
    assert est.milliseconds == pytest.approx(est.cycles / 64e6 * 1e3)
    assert "ESTIMATE" in est.assumptions and "wait states" in est.assumptions
    assert estimate(result, "STM32F411").milliseconds < est.milliseconds  # 100 MHz
    assert estimate(result, refill_cycles=3).cycles > est.cycles
    with pytest.raises(ValueError, match="count=True"):
        estimate(VirtualBoard(dot_plain).run())
    with pytest.raises(ValueError, match="refill_cycles"):
        estimate(result, refill_cycles=5)


def test_phase_markers_split_the_count():
    src = r"""
    #include <stdint.h>
    volatile int32_t sink;
    __attribute__((noinline)) void work(int n) { for (int i = 0; i < n; i++) sink += i; }
    int main(void) {
        work(100); tinyml_mark(7);
        work(200); tinyml_mark(8);
        work(400); TINYML_LAYER_DONE(9);
        return 0;
    }
    """
    result = VirtualBoard(build({"phases.c": src})).run(count=True)
    assert result.marker_ids == (7, 8, 9)
    l0, l1, l2 = result.layer_instructions
    per_iteration = (l2 - l1) / 200
    assert l1 - l0 == pytest.approx(100 * per_iteration, abs=2)  # same fixed cost in each phase
    assert (
        sum(result.layer_instructions) < result.instructions < sum(result.layer_instructions) + 40
    )


def test_stack_measurement_sees_deeper_recursion():
    src = r"""
    #include <stdint.h>
    volatile int32_t depth;
    __attribute__((noinline)) int32_t down(int32_t n) {
        volatile int32_t frame[8];
        for (int i = 0; i < 8; i++) frame[i] = n + i;
        return n == 0 ? 0 : frame[0] + down(n - 1);
    }
    int main(void) { return down(depth); }
    """
    vb = VirtualBoard(build({"rec.c": src}))
    shallow = vb.run({"depth": np.int32([10])})
    deep = vb.run({"depth": np.int32([40])})
    assert deep.return_value == 40 * 41 // 2
    assert deep.stack_bytes > shallow.stack_bytes + 30 * 32  # 30 more frames of >= 32 bytes
    assert deep.ram_bytes == deep.static_ram_bytes + deep.stack_bytes
    with pytest.raises(EmulationError, match="stack overflow"):
        vb.run({"depth": np.int32([1000])})  # ~48 KB of frames in an 8 KB stack
    assert vb.run({"depth": np.int32([3])}).return_value == 6  # reloaded after the fault


# --------------------------------------------------------------------------- sizes


def test_const_array_lands_in_flash_and_zeroed_global_in_bss():
    src = r"""
    #include <stdint.h>
    const int8_t weights[6000] = {1, 2, 3};
    int8_t buffer[3000];
    int32_t counter = 5;
    volatile int32_t index_;
    int main(void) { buffer[index_] = weights[index_]; return buffer[index_] + counter; }
    """
    fw = build({"sizes.c": src})
    s = fw.sizes
    assert fw.symbol("weights").section == ".rodata" and fw.symbol("weights").size == 6000
    assert fw.symbol("buffer").section == ".bss"
    assert fw.symbol("counter").section == ".data"
    assert s.rodata_bytes >= 6000 and s.flash_bytes >= 6000 + s.code_bytes
    assert s.bss_bytes >= 3000 and s.static_ram_bytes < 3300  # weights are not in RAM
    assert s.stack_reserved_bytes == get_board().stack_bytes
    assert s.largest(1, (".rodata",))[0].name == "weights"
    assert sum(row[2] for row in s.breakdown(5)) == sum(
        s.sections[k] for k in s.sections if k != ".bss"
    )
    with pytest.raises(ValueError, match="const"):
        VirtualBoard(fw).write("weights", np.zeros(4, np.int8))


# --------------------------------------------------------------------------- failures


def test_compile_error_raises_build_error_with_the_compiler_message():
    with pytest.raises(BuildError) as info:
        build({"broken.c": "int main(void) {\n  return undefined_name;\n}\n"})
    message = str(info.value)
    assert "broken.c:2:" in message and "error" in message and "undefined_name" in message
    assert "Traceback" not in message
    with pytest.raises(BuildError, match="undefined symbol"):
        build({"link.c": "int missing(void); int main(void) { return missing(); }"})


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="opt"):
        build({"m.c": "int main(void){return 0;}"}, opt="-O9")
    with pytest.raises(ValueError, match="source name"):
        build({"../m.c": "int main(void){return 0;}"})
    with pytest.raises(ValueError, match="model.h"):
        build({"m.c": "int main(void){return 0;}"}, harness="model")


def test_out_of_bounds_write_raises_emulation_error():
    src = r"""
    #include <stdint.h>
    int32_t table[4];
    volatile int32_t index_;
    int main(void) { table[index_] = 1; return 0; }
    """
    vb = VirtualBoard(build({"oob.c": src}))
    assert vb.run({"index_": np.int32([3])}).return_value == 0
    with pytest.raises(
        EmulationError, match=r"write to unmapped address 0x[0-9a-f]+.*main"
    ) as info:
        vb.run({"index_": np.int32([0x1000_0000])})  # 1 GB past the array
    assert info.value.pc is not None and "oob.c" in info.value.where


def test_faults_name_the_exception_and_the_place():
    src = r"""
    #include <stdint.h>
    const int32_t table[4] = {1, 2, 3, 4};
    volatile int32_t mode;
    int main(void) {
        if (mode == 1) *(volatile int32_t *)&table[1] = 5;   /* write to flash */
        if (mode == 2) __asm__ volatile("svc #0");            /* an exception: SVCall */
        if (mode == 3) __builtin_trap();                      /* udf */
        return table[mode];
    }
    """
    vb = VirtualBoard(build({"faults.c": src}))
    assert vb.run({"mode": np.int32([0])}).return_value == 1
    with pytest.raises(EmulationError, match="read-only flash.*const"):
        vb.run({"mode": np.int32([1])})
    with pytest.raises(EmulationError, match=r"supervisor call.*main\+0x[0-9a-f]+ \(faults.c:8\)"):
        vb.run({"mode": np.int32([2])})
    with pytest.raises(EmulationError, match="undefined instruction"):
        vb.run({"mode": np.int32([3])})


def test_reading_and_writing_variables():
    src = r"""
    #include <stdint.h>
    int16_t values[4];
    volatile int32_t total;
    int main(void) { total = values[0] + values[1] + values[2] + values[3]; return total; }
    """
    vb = VirtualBoard(build({"rw.c": src}))
    vb.write("values", np.int16([1000, -2000, 3, 4]))
    assert vb.run().return_value == -993
    np.testing.assert_array_equal(vb.read("total", np.int32), [-993])
    vb.write("values", [1, 2, 3, 4], dtype=np.int16)
    assert vb.run().return_value == 10
    vb.reset()  # back to the state after startup: .bss zero
    np.testing.assert_array_equal(vb.read("values", np.int16), [0, 0, 0, 0])
    with pytest.raises(ValueError, match="outside int16"):
        vb.write("values", [40000], dtype=np.int16)
    with pytest.raises(ValueError, match="do not fit"):
        vb.write("values", np.zeros(5, np.int16))
    with pytest.raises(KeyError, match="volatile"):
        vb.write("valeus", [1])


def test_endless_loop_stops_with_a_clear_error():
    src = "volatile int spin = 1; int main(void) { while (spin) {} return 0; }"
    fw = build({"loop.c": src})
    with pytest.raises(EmulationError, match="max_instructions=10,000"):
        VirtualBoard(fw, max_instructions=10_000).run(count=True)
    start = time.perf_counter()
    with pytest.raises(EmulationError, match="max_seconds=0.2"):
        VirtualBoard(fw, max_seconds=0.2).run()
    assert time.perf_counter() - start < 5


# --------------------------------------------------------------------------- the model harness

MODEL_H = r"""
#ifndef MODEL_H
#define MODEL_H
#include <stdint.h>
#define MODEL_INPUT_SIZE 10
#define MODEL_OUTPUT_SIZE 10
void model_invoke(const int8_t *input, int8_t *output);
#endif
"""

MODEL_C = r"""
#include "model.h"
#ifndef TINYML_LAYER_DONE
#define TINYML_LAYER_DONE(i) ((void)0)
#endif
static int8_t scratch[MODEL_INPUT_SIZE];
void model_invoke(const int8_t *input, int8_t *output) {
    for (int i = 0; i < MODEL_INPUT_SIZE; i++) scratch[i] = input[i];
    TINYML_LAYER_DONE(0);
    for (int i = 0; i < MODEL_OUTPUT_SIZE; i++) output[i] = (int8_t)(scratch[i] + 1);
    TINYML_LAYER_DONE(1);
}
"""


def test_model_harness_adds_one():
    fw = build({"model.h": MODEL_H, "model.c": MODEL_C}, harness="model")
    vb = VirtualBoard(fw)
    x = np.arange(-5, 5, dtype=np.int8)
    result = vb.infer(x, count=True)
    np.testing.assert_array_equal(result.output, x + 1)
    assert result.marker_ids == (0, 1) and all(n > 10 for n in result.layer_instructions)
    xs = np.random.default_rng(0).integers(-128, 127, (200, 10)).astype(np.int8)
    np.testing.assert_array_equal(vb.infer_batch(xs), xs + 1)
    with pytest.raises(ValueError, match="MODEL_INPUT_SIZE=10"):
        vb.infer(np.zeros(11, np.int8))
    with pytest.raises(ValueError, match="int8"):
        vb.infer(np.full(10, 300))
    with pytest.raises(ValueError, match="harness"):
        VirtualBoard(build({"m.c": "int main(void){return 0;}"})).infer(x)


# --------------------------------------------------------------------------- build plumbing


def test_builds_are_cached(dot_plain):
    start = time.perf_counter()
    again = build({"dot.c": DOT})
    assert again.path == dot_plain.path and again.elf == dot_plain.elf
    assert time.perf_counter() - start < 1.0


def test_emit_project_writes_a_makefile_and_refuses_to_overwrite(tmp_path):
    folder = emit_project({"dot.c": DOT}, tmp_path / "proj", simd=True)
    makefile = (folder / "Makefile").read_text()
    assert "arm-none-eabi-gcc" in makefile and "-DTINYML_SIMD" in makefile and "dot.c" in makefile
    assert "\n\t$(CC)" in makefile  # recipes start with a tab
    for name in ("link.ld", "runtime/startup.c", "runtime/mini_libc.c", "runtime/include/string.h"):
        assert (folder / name).is_file()
    emit_project({"dot.c": DOT}, folder, simd=True)  # identical files: fine
    with pytest.raises(FileExistsError, match="dot.c"):
        emit_project({"dot.c": DOT + "\n// changed\n"}, folder, simd=True)
    emit_project({"dot.c": DOT + "\n// changed\n"}, folder, simd=True, overwrite=True)
    assert (folder / "dot.c").read_text().endswith("// changed\n")


def test_build_works_with_an_unwritable_home(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where HOME's parent should be\n")
    home = str(blocker / "home")  # nothing can be created below a file, not even by root
    env = {**os.environ, "HOME": home, "USERPROFILE": home, "APPDATA": home, "LOCALAPPDATA": home}
    env.pop("XDG_CACHE_HOME", None)
    code = textwrap.dedent(
        f"""
        from tinyml_course.mcu.build import build
        from tinyml_course.mcu.emulator import VirtualBoard
        fw = build({{"home.c": "int main(void) {{ return {time.time_ns() % 1000} + 1; }}"}}, cache=False)
        print(VirtualBoard(fw).run().return_value)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) >= 1


def test_thumb_instruction_lengths():
    # movs r0, #0 (16-bit); bl (32-bit, 0b11110 prefix); ldr.w (32-bit, 0b11111); bx lr
    code = bytes.fromhex("002000f000f8d0f800007047")
    assert thumb_instruction_count(code) == 4
