# Tests of the CUDA kernels (kernels/cuda/*.cu); the checks are in tests/cuda_op_checks.h.
#  - test_cuda_emu_kernels (MF_CUDA_EMULATION, CI): tests/test_cuda_kernels.cpp, every kernel
#    on the CPU emulator against its CPU twin (ctest -R emu). matmul.cu (cuBLASLt) is not
#    built there (kernels/cuda/emu/skip.txt) and shows as skipped.
#  - test_cuda_emu_backend (MF_CUDA_EMULATION): the backend tables' entries that combine
#    launchers (matmul_gelu, residual_layernorm_forward) against the CPU twins and the
#    unfused entries (tests/test_cuda_emu_backend.cpp).
#  - test_gpu_ops (MF_HAVE_CUDA): tests/gpu/test_gpu_ops.cu against the real kernels and
#    cuBLASLt; tests/gpu/run.sh runs it on a GPU machine. It is built whenever nvcc is found
#    (also next to the emulation build) so that it keeps compiling in CI, where it runs and
#    says "skipped: no GPU".
if(MF_CUDA_EMULATION AND COMMAND mf_cuda_emu_test)
  mf_cuda_emu_test(test_cuda_emu_kernels SOURCES test_cuda_kernels.cpp TIMEOUT 600)
  # the backend tables' composite entries (matmul_gelu, residual_layernorm_forward)
  mf_cuda_emu_test(test_cuda_emu_backend TIMEOUT 300)
endif()

if(MF_HAVE_CUDA)
  add_executable(test_gpu_ops gpu/test_gpu_ops.cu)
  target_link_libraries(test_gpu_ops PRIVATE mf_test mf_cuda)
  target_compile_options(test_gpu_ops PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>)
  add_test(NAME test_gpu_ops COMMAND test_gpu_ops WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(test_gpu_ops PROPERTIES LABELS gpu TIMEOUT 900)
  mf_c_test(test_cuda_plugin)   # the backend plugin loads and its table is complete (no GPU needed)
endif()
