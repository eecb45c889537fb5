# End-to-end tests through the mforge binary, sharing one prepared data set and tiny run.
set(MF_TESTDATA ${CMAKE_BINARY_DIR}/testdata)
add_test(NAME e2e_fixture COMMAND bash ${CMAKE_SOURCE_DIR}/tests/e2e/fixture.sh $<TARGET_FILE:mforge> ${MF_TESTDATA})
set_tests_properties(e2e_fixture PROPERTIES FIXTURES_SETUP e2e_data TIMEOUT 300)
foreach(t cli cli_errors resume learn)
  add_test(NAME e2e_${t} COMMAND bash ${CMAKE_SOURCE_DIR}/tests/e2e/${t}.sh $<TARGET_FILE:mforge> ${MF_TESTDATA})
  set_tests_properties(e2e_${t} PROPERTIES FIXTURES_REQUIRED e2e_data TIMEOUT 600)
endforeach()
# the CUDA backend's trainer on the emulator (cmake/cuda_emulation.cmake builds mforge_emu)
if(TARGET mforge_emu)
  add_test(NAME e2e_cuda_emu COMMAND bash ${CMAKE_SOURCE_DIR}/tests/e2e/cuda_emu.sh $<TARGET_FILE:mforge>
                                     ${MF_TESTDATA} $<TARGET_FILE:mforge_emu>)
  set_tests_properties(e2e_cuda_emu PROPERTIES FIXTURES_REQUIRED e2e_data LABELS cuda_emu TIMEOUT 900)
  # cuda_graph: true, captured and replayed on the emulator, against eager steps
  add_test(NAME e2e_cuda_graph COMMAND bash ${CMAKE_SOURCE_DIR}/tests/e2e/cuda_graph.sh $<TARGET_FILE:mforge>
                                       ${MF_TESTDATA} $<TARGET_FILE:mforge_emu> $<TARGET_FILE:ckpt_compare>)
  set_tests_properties(e2e_cuda_graph PROPERTIES FIXTURES_REQUIRED e2e_data LABELS cuda_emu TIMEOUT 400)
endif()
# benchmarks/gpt_train --B max on the emulator, under a small device memory
if(TARGET mf_emu) # gpt_train_emu: benchmarks/gpt_train.cmake, added after tests/
  add_test(NAME e2e_bench_emu COMMAND bash ${CMAKE_SOURCE_DIR}/tests/e2e/bench_emu.sh $<TARGET_FILE:gpt_train_emu>)
  set_tests_properties(e2e_bench_emu PROPERTIES LABELS cuda_emu TIMEOUT 300)
endif()
