# NCCL for the device communicator (parallel/comm_nccl.c): found next to the CUDA toolkit
# (no imported target ships with it). Without CUDA or NCCL the file compiles to nothing
# and multi-GPU jobs are not available; the MPI and single-rank communicators remain.
set(MF_HAVE_NCCL OFF)
if(MF_HAVE_CUDA)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include)
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(MF_HAVE_NCCL ON)
    target_include_directories(mf PUBLIC ${NCCL_INCLUDE_DIR} ${CUDAToolkit_INCLUDE_DIRS})
    target_link_libraries(mf PUBLIC ${NCCL_LIBRARY} CUDA::cudart)
    target_compile_definitions(mf PUBLIC MF_HAVE_NCCL=1)
  endif()
endif()
message(STATUS "mforge: NCCL ${MF_HAVE_NCCL} ${NCCL_LIBRARY}")
