# The CUDA emulation suite (cmake/cuda_emulation.cmake; ctest -R emu): the emulator's own
# tests, an example of kernel tests against CPU computations, and the count of kernels in
# kernels/cuda checked by emulation. Kernel tests of kernels/cuda/<op>.cu are registered
# wherever their author likes with mf_cuda_emu_test(test_cuda_emu_<op>).
if(NOT MF_CUDA_EMULATION)
  return()
endif()

# the harness of emulated tests (cuda_emu_test.h)
mf_cuda_emu_prepare(MF_EMU_HARNESS_GEN ${CMAKE_CURRENT_SOURCE_DIR}/cuda_emu_test.cpp)
add_library(mf_cuda_emu_test STATIC ${MF_EMU_HARNESS_GEN})
target_link_libraries(mf_cuda_emu_test PUBLIC mf_cuda_emu)
target_compile_options(mf_cuda_emu_test PRIVATE ${MF_EMU_CXX_FLAGS} ${MF_WARN})

# launch logs start empty in every run: the count only sees this run's launches
add_test(NAME cuda_emu_reset COMMAND ${CMAKE_COMMAND} -E rm -rf ${MF_EMU_LOG_DIR})
set_tests_properties(cuda_emu_reset PROPERTIES FIXTURES_SETUP cuda_emu LABELS cuda_emu)

mf_cuda_emu_test(test_cuda_emu TIMEOUT 120)          # the emulator itself
mf_cuda_emu_test(test_cuda_emu_example TIMEOUT 120)  # kernel tests, end to end

# runs after every test of the fixture: kernels that exist vs kernels launched
add_executable(test_cuda_emu_count test_cuda_emu_count.cpp ${MF_EMU_DIR}/emu_scan.cpp)
target_include_directories(test_cuda_emu_count PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_options(test_cuda_emu_count PRIVATE ${MF_WARN})
add_test(NAME test_cuda_emu_count
         COMMAND test_cuda_emu_count ${CMAKE_SOURCE_DIR} ${MF_EMU_LOG_DIR})
set_tests_properties(test_cuda_emu_count PROPERTIES FIXTURES_CLEANUP cuda_emu LABELS cuda_emu)
