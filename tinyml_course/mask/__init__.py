"""The mask-detection ESP32 demo (notebook 06): data, preprocessing, model, device and host.

Modules
-------
faces
    Seeded procedural faces with and without masks, with exact crop boxes.
real_faces
    The real faces bundled with scikit-image, bare and with drawn-on masks.
folder
    A user's own photos laid out as ``DIR/with_mask/*`` and ``DIR/without_mask/*``.
preprocess
    The one preprocessing function: detect, crop, grayscale, resize, quantize.
model
    The tiny CNN, its training and the cached default int8 model.
scenes
    Whole camera frames (96x96 scenes with a face, masked or not, anywhere in a background) for
    notebook 08's frame-level model.

protocol, host, virtual_device, sketch, cli
    The device side: the framed serial protocol, the host client and streaming, a virtual
    ESP32 on a pseudo-terminal, the generated Arduino sketch and its compile check, and the
    ``tinyml-course mask`` commands.

Sub-modules are imported on use.
"""
