// Stand-in for the Arduino TensorFlow Lite Micro library's umbrella header. Host compile check only.
#ifndef TINYML_STUB_CHIRALE_TENSORFLOWLITE_H_
#define TINYML_STUB_CHIRALE_TENSORFLOWLITE_H_
#endif
