# Per-kernel GPU benchmark (GB/s and TFLOP/s against the machine's ceilings); built whenever
# nvcc is found so that it keeps compiling in CI, run by tests/gpu/run.sh on a GPU machine
# (without one it prints "skipped: no GPU").
if(MF_HAVE_CUDA)
  add_executable(gpu_kernels ${CMAKE_CURRENT_LIST_DIR}/gpu_kernels.cu)
  target_link_libraries(gpu_kernels PRIVATE mf_test mf_cuda)
  target_compile_options(gpu_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>)
endif()
