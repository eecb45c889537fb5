add_executable(gpt_train ${CMAKE_CURRENT_LIST_DIR}/gpt_train.c)
target_link_libraries(gpt_train PRIVATE mf)
target_compile_options(gpt_train PRIVATE ${MF_WARN} ${MF_OPT})
target_compile_definitions(gpt_train PRIVATE MF_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
