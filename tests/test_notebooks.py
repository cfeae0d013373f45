"""Every course notebook executes headless, top to bottom, and records its contract figures."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tinyml_course.paths import repo_root

ROOT = repo_root()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# The figure names each notebook records: a contract that other tools read (the issues list them).
EXPECTED_FIGURES: dict[str, set[str]] = {
    "00_tinyml_budget": {
        "baseline_params",
        "baseline_macs",
        "baseline_float32_bytes",
        "baseline_int8_bytes",
        "baseline_peak_activation_bytes",
        "baseline_accuracy",
        "baseline_int8_arena_bytes",
        "energy_memory_share_float32_dram",
        "energy_memory_share_float32_sram",
        "energy_memory_share_int8_sram",
        "energy_flash_break_even_pj_per_32bit_read",
    },
    "01_separable_convolutions": {
        "example_standard_macs",
        "example_separable_macs",
        "standard_macs",
        "separable_macs",
        "standard_params",
        "separable_params",
        "standard_accuracy",
        "separable_accuracy",
    },
    "02_quantization": {
        "float_accuracy",
        "dynamic_range_accuracy",
        "int8_accuracy",
        "qat_int8_accuracy",
        "ptq_finetuned_int8_accuracy",
        "float_tflite_bytes",
        "int8_tflite_bytes",
        "float_latency_ms",
        "int8_latency_ms",
        "integer_reference_elements_compared",
        "integer_reference_mismatches",
    },
    "03_pruning_and_clustering": {
        "baseline_accuracy",
        "pruned_accuracy",
        "uniform_pruned_accuracy",
        "pruned_sparsity",
        "baseline_gzip_bytes",
        "baseline_flash_bytes",
        "pruned_int8_flash_bytes",
        "clustered_int8_flash_bytes",
        "clustered_compressed_flash_bytes",
        "compressed_output_mismatches",
        "pruned_gzip_bytes",
        "pruned_int8_gzip_bytes",
        "structured_macs",
        "baseline_macs",
        "structured_accuracy",
        "structured_latency_ms",
        "baseline_latency_ms",
        "clustered_gzip_bytes",
        "clustered_accuracy",
    },
    "04_knowledge_distillation": {
        "teacher_accuracy",
        "teacher_params",
        "student_params",
        "student_scratch_accuracy_mean",
        "student_scratch_accuracy_std",
        "student_distilled_accuracy_mean",
        "student_distilled_accuracy_std",
        "student_unlabelled_distilled_accuracy",
        "student_pseudo_label_accuracy_mean",
        "student_pool_true_label_accuracy_mean",
    },
    "05_early_exits_and_cascades": {
        "full_accuracy",
        "full_macs",
        "early_exit_accuracy",
        "early_exit_average_macs",
        "fraction_exited_first",
        "full_latency_ms",
        "early_exit_latency_ms",
        "cascade_accuracy",
        "cascade_average_macs",
        "validation_accuracy_ci_width",
        "policy_difference_ci_width",
        "calibrated_early_exit_accuracy",
        "calibrated_early_exit_average_macs",
    },
    "06_mask_detection_esp32": {
        "synthetic_test_accuracy",
        "real_faces_accuracy",
        "detector_hit_rate_bare",
        "detector_hit_rate_masked",
        "params",
        "int8_tflite_bytes",
        "arena_bytes",
        "esp32_usable_ram_bytes",
        "host_detect_ms_per_frame",
        "host_cnn_ms_per_frame",
        "esp32_ram_margin_bytes",
        "host_frames_per_second",
    },
    "07_on_the_microcontroller": {
        "baseline_mcu_flash_bytes",
        "baseline_mcu_ram_bytes",
        "baseline_tflm_arena_bytes",
        "baseline_instructions",
        "baseline_output_mismatches",
        "baseline_inputs_compared",
        "simd_speedup",
        "pointwise_instructions_per_mac",
        "depthwise_instructions_per_mac",
        "dense_instructions_per_mac",
        "baseline_estimated_ms",
    },
    "08_peak_memory_patches": {
        "layerwise_peak_activation_bytes",
        "patch_peak_activation_bytes",
        "peak_memory_reduction",
        "patch_mac_overhead",
        "layerwise_arena_bytes",
        "patch_arena_bytes",
        "patch_output_mismatches",
        "patch_images_compared",
        "frame_accuracy",
        "frame_int8_accuracy",
    },
    "09_keyword_spotting": {
        "keywords",
        "train_utterances",
        "heldout_voice_accuracy",
        "heldout_voice_int8_accuracy",
        "int8_tflite_bytes",
        "arena_bytes",
        "macs",
        "frontend_max_abs_error",
        "stream_detection_rate",
        "stream_false_accepts_per_hour",
    },
    "10_architecture_search": {
        "supernet_train_seconds",
        "subnets_evaluated",
        "rank_correlation",
        "budget_flash_bytes",
        "budget_arena_bytes",
        "search_best_accuracy",
        "search_best_flash_bytes",
        "search_best_arena_bytes",
        "search_best_macs",
        "handmade_accuracy",
        "handmade_flash_bytes",
        "handmade_arena_bytes",
    },
}

# Figures whose relation is what the notebook teaches: they must hold in every run, not only exist.
MUST_HOLD: dict[str, list[tuple[str, Callable[[dict], bool]]]] = {
    "00_tinyml_budget": [
        (
            "int8 file smaller than float",
            lambda f: f["baseline_int8_bytes"] < f["baseline_float32_bytes"],
        ),
        (
            "memory's energy share is larger with float32 weights in DRAM than int8 in SRAM",
            lambda f: f["energy_memory_share_int8_sram"] < f["energy_memory_share_float32_dram"],
        ),
        (
            "with int8 weights, a read would have to cost more than an SRAM read (5 pJ, Horowitz) "
            "for memory to dominate",
            lambda f: f["energy_flash_break_even_pj_per_32bit_read"] > 5.0,
        ),
    ],
    "01_separable_convolutions": [
        ("separable layers do fewer MACs", lambda f: f["separable_macs"] < f["standard_macs"]),
    ],
    "02_quantization": [
        (
            "integer-only NumPy inference is bit-exact",
            lambda f: f["integer_reference_mismatches"] == 0,
        ),
        (
            "int8 file smaller than float",
            lambda f: f["int8_tflite_bytes"] < f["float_tflite_bytes"],
        ),
    ],
    "03_pruning_and_clustering": [
        (
            "compressed weights give the same outputs",
            lambda f: f["compressed_output_mismatches"] == 0,
        ),
        (
            "LUT compression saves flash",
            lambda f: f["clustered_compressed_flash_bytes"] < f["clustered_int8_flash_bytes"],
        ),
        (
            "pruned int8 downloads smaller than pruned float",
            lambda f: f["pruned_int8_gzip_bytes"] < f["pruned_gzip_bytes"],
        ),
    ],
    "06_mask_detection_esp32": [
        (
            "the RAM margin is the usable RAM minus the measured arena",
            lambda f: f["esp32_ram_margin_bytes"] == f["esp32_usable_ram_bytes"] - f["arena_bytes"],
        ),
        (
            "the detector costs more host time than the CNN",
            lambda f: f["host_detect_ms_per_frame"] > f["host_cnn_ms_per_frame"],
        ),
    ],
    "07_on_the_microcontroller": [
        (
            "the generated C equals tflite-micro on at least 200 inputs",
            lambda f: f["baseline_output_mismatches"] == 0 and f["baseline_inputs_compared"] >= 200,
        ),
        ("the SMLAD kernels issue fewer instructions", lambda f: f["simd_speedup"] > 1.0),
        (
            "a depthwise MAC costs more instructions than a pointwise one",
            lambda f: f["depthwise_instructions_per_mac"] > f["pointwise_instructions_per_mac"],
        ),
    ],
    "08_peak_memory_patches": [
        (
            "patch by patch equals layer by layer on at least 200 frames",
            lambda f: f["patch_output_mismatches"] == 0 and f["patch_images_compared"] >= 200,
        ),
        (
            "the chosen schedule cuts the measured peak at least 3x with at most 25% extra MACs",
            lambda f: f["peak_memory_reduction"] >= 3.0 and 0.0 < f["patch_mac_overhead"] <= 0.25,
        ),
        (
            "the reduction is the layer-by-layer arena over the patch-based one",
            lambda f: (
                abs(
                    f["peak_memory_reduction"] - f["layerwise_arena_bytes"] / f["patch_arena_bytes"]
                )
                < 1e-9
            ),
        ),
        (
            "patches hold less than the layer-by-layer peak, analytic and measured",
            lambda f: (
                f["patch_peak_activation_bytes"] < f["layerwise_peak_activation_bytes"]
                and f["patch_arena_bytes"] < f["layerwise_arena_bytes"]
            ),
        ),
        (
            "the arena holds at least the analytic activations",
            lambda f: f["layerwise_arena_bytes"] >= f["layerwise_peak_activation_bytes"],
        ),
        (
            "the frame model is useful, and int8 keeps it",
            lambda f: (
                f["frame_accuracy"] >= 0.8
                and f["frame_int8_accuracy"] >= f["frame_accuracy"] - 0.03
            ),
        ),
    ],
    "09_keyword_spotting": [
        ("at least 8 keywords (plus unknown and silence)", lambda f: f["keywords"] >= 8),
        (
            "at least 90% int8 accuracy on held-out voices",
            lambda f: f["heldout_voice_int8_accuracy"] >= 0.90,
        ),
        ("the int8 model is under 64 KB of flash", lambda f: f["int8_tflite_bytes"] < 64 * 1024),
        ("the measured arena is under 32 KB", lambda f: f["arena_bytes"] < 32 * 1024),
        ("the front end matches tf.signal", lambda f: f["frontend_max_abs_error"] < 1e-2),
        (
            "streaming detects keywords and counts false accepts",
            lambda f: (
                0 < f["stream_detection_rate"] <= 1 and f["stream_false_accepts_per_hour"] >= 0
            ),
        ),
    ],
    "10_architecture_search": [
        (
            "the searched and the hand-designed networks fit the budget, as measured",
            lambda f: (
                f["search_best_flash_bytes"] <= f["budget_flash_bytes"]
                and f["search_best_arena_bytes"] <= f["budget_arena_bytes"]
                and f["handmade_flash_bytes"] <= f["budget_flash_bytes"]
                and f["handmade_arena_bytes"] <= f["budget_arena_bytes"]
            ),
        ),
        (
            "the searched network is at least as accurate as the hand-designed one",
            lambda f: f["search_best_accuracy"] >= f["handmade_accuracy"] >= 0.5,
        ),
        (
            "the supernet ranks networks as training them alone does",
            lambda f: f["rank_correlation"] > 0,
        ),
        (
            "the search evaluates many networks with the supernet's weights",
            lambda f: f["subnets_evaluated"] >= 60,
        ),
    ],
}


def test_notebooks_are_stored_without_outputs() -> None:
    for path in NOTEBOOKS + sorted((ROOT / "solutions").glob("*/*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, (
                    f"{path.name} is stored with outputs; clear them."
                )


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_records_figures(notebook, tmp_path, monkeypatch) -> None:
    from tinyml_course.results import load_figures
    from tinyml_course.runner import run_notebooks

    monkeypatch.setenv("TINYML_COURSE_RESULTS", str(tmp_path))
    (run,) = run_notebooks([notebook], echo=False)
    assert run.ok, f"{notebook.name} failed: {run.error} (executed copy: {run.executed_path})"
    figures = load_figures(root=tmp_path).get(notebook.stem, {})
    missing = EXPECTED_FIGURES.get(notebook.stem, set()) - set(figures)
    assert not missing, f"{notebook.name} did not record {sorted(missing)}"
    broken = [what for what, holds in MUST_HOLD.get(notebook.stem, []) if not holds(figures)]
    assert not broken, f"{notebook.name}: {broken} do not hold: {figures}"
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["notebooks"][notebook.stem]["ok"] is True
    assert report["figures"][notebook.stem] == figures
