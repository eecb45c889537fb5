if(NOT DEFINED MF_TESTDATA)
  set(MF_TESTDATA ${CMAKE_BINARY_DIR}/testdata)
endif()
# Multi-rank tests: the communicators, every parallel layout against one process, the
# trainer under mpirun (DP, ZeRO-1, TP, DP x TP, resharding checkpoints), and a rank that
# dies or fails mid-step. With 2 cores here, ranks run 1 thread each and 4 ranks are
# oversubscribed; all of them together stay under ~3 minutes.
foreach(t test_comm test_parallel test_fault_train ckpt_compare)
  add_executable(${t} ${t}.c)
  target_link_libraries(${t} PRIVATE mf_test)
  target_compile_options(${t} PRIVATE ${MF_WARN} ${MF_OPT})
endforeach()

# alone: the single-rank communicator, no MPI launcher
add_test(NAME par_comm_single COMMAND test_comm WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
add_test(NAME par_equiv_single COMMAND test_parallel WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})

if(MPI_C_FOUND AND MPIEXEC_EXECUTABLE)
  set(MF_MPIRUN ${MPIEXEC_EXECUTABLE})
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _mpi_version ERROR_QUIET)
  if(_mpi_version MATCHES "Open MPI|OpenRTE")
    # as root (CI containers), and more ranks than cores
    list(APPEND MF_MPIRUN --allow-run-as-root --oversubscribe)
  endif()
  string(REPLACE ";" " " MF_MPIRUN_STR "${MF_MPIRUN}")
  foreach(np 2 4)
    add_test(NAME par_comm_np${np} COMMAND ${MF_MPIRUN} -np ${np} $<TARGET_FILE:test_comm>
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    add_test(NAME par_equiv_np${np} COMMAND ${MF_MPIRUN} -np ${np} $<TARGET_FILE:test_parallel>
             WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(par_comm_np${np} par_equiv_np${np} PROPERTIES PROCESSORS 2 TIMEOUT 300)
  endforeach()
  # the trainer through the mforge binary (shares the e2e data fixture)
  foreach(t train fault)
    add_test(NAME par_${t} COMMAND bash ${CMAKE_SOURCE_DIR}/tests/parallel/${t}.sh $<TARGET_FILE:mforge>
             ${MF_TESTDATA} "${MF_MPIRUN_STR}" $<TARGET_FILE:ckpt_compare> $<TARGET_FILE:test_fault_train>)
    set_tests_properties(par_${t} PROPERTIES FIXTURES_REQUIRED e2e_data PROCESSORS 2 TIMEOUT 600)
  endforeach()
  # data parallelism on the CUDA backend, on the emulator (the staged device communicator)
  if(TARGET mforge_emu)
    add_test(NAME par_cuda_emu COMMAND bash ${CMAKE_SOURCE_DIR}/tests/parallel/cuda_emu.sh $<TARGET_FILE:mforge>
             ${MF_TESTDATA} "${MF_MPIRUN_STR}" $<TARGET_FILE:ckpt_compare> $<TARGET_FILE:test_fault_train>
             $<TARGET_FILE:mforge_emu>)
    set_tests_properties(par_cuda_emu PROPERTIES FIXTURES_REQUIRED e2e_data PROCESSORS 2 LABELS cuda_emu TIMEOUT 900)
  endif()
else()
  message(STATUS "mforge: no mpiexec: multi-rank tests are not registered")
endif()

# NCCL: a 1-rank communicator at least, on a GPU machine; reports "skipped" elsewhere
if(MF_HAVE_NCCL)
  add_executable(test_nccl ${CMAKE_CURRENT_SOURCE_DIR}/gpu/test_nccl.c)
  target_link_libraries(test_nccl PRIVATE mf_test)
  target_compile_options(test_nccl PRIVATE ${MF_WARN} ${MF_OPT})
  add_test(NAME gpu_nccl COMMAND test_nccl WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
endif()
