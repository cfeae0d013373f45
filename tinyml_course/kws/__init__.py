"""Keyword spotting (notebook 09): eSpeak NG synthesis, a NumPy front end, a DS-CNN, streaming.

* :mod:`~tinyml_course.kws.synth`: eSpeak NG through ctypes (the ``espeakng-loader`` wheel).
* :mod:`~tinyml_course.kws.data`: the augmented data set, split by voice and cached; the
  opt-in reader for ``DIR/<word>/*.wav`` (Speech Commands or your own recordings).
* :mod:`~tinyml_course.kws.frontend`: framing, window, FFT, mel, log, DCT in NumPy.
* :mod:`~tinyml_course.kws.model`: the DS-CNN, training, int8 conversion, the course model.
* :mod:`~tinyml_course.kws.stream`: sliding windows and micro_speech's decision rule.
* :mod:`~tinyml_course.kws.cli`: ``tinyml-course kws classify|detect|keywords``.
"""
