# Load generator for `mforge serve` (run it by hand: build/benchmarks/serve_load --help).
add_executable(serve_load ${CMAKE_CURRENT_LIST_DIR}/serve_load.c)
target_link_libraries(serve_load PRIVATE mf)
target_compile_options(serve_load PRIVATE ${MF_WARN} ${MF_OPT})
add_dependencies(serve_load mforge)
