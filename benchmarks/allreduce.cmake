# All-reduce bandwidth of the communicator, nccl-tests style:
#   mpirun -np 2 build/benchmarks/allreduce [--backend nccl] [--raw]
add_executable(allreduce ${CMAKE_CURRENT_LIST_DIR}/allreduce.c)
target_link_libraries(allreduce PRIVATE mf)
target_compile_options(allreduce PRIVATE ${MF_WARN} ${MF_OPT})

# Overlapped buckets vs one all-reduce after backward, alternating steps in one run:
#   mpirun -np 2 build/benchmarks/dp_overlap [--pairs 10] [--bucket-mb 1]
add_executable(dp_overlap ${CMAKE_CURRENT_LIST_DIR}/dp_overlap.c)
target_link_libraries(dp_overlap PRIVATE mf)
target_compile_options(dp_overlap PRIVATE ${MF_WARN} ${MF_OPT})
