# Serving: the paged batched GPT step, the HTTP parser and request decoding, the server
# over real sockets, and the libFuzzer target for what parses network bytes.
mf_c_test(test_serve_step)
mf_c_test(test_sched)
set_tests_properties(test_sched PROPERTIES TIMEOUT 120 ENVIRONMENT OMP_WAIT_POLICY=PASSIVE)
# passive OpenMP threads: spinning ones collapse on a shared 2-core machine
set_tests_properties(test_serve_step PROPERTIES TIMEOUT 120 ENVIRONMENT OMP_WAIT_POLICY=PASSIVE)
mf_c_test(test_http)
set_tests_properties(test_http PROPERTIES TIMEOUT 60)
mf_c_test(test_server $<TARGET_FILE:mforge>)
set_tests_properties(test_server PROPERTIES TIMEOUT 180 ENVIRONMENT OMP_WAIT_POLICY=PASSIVE)

# The fuzz target (tests/fuzz/fuzz_http.c) needs clang's libFuzzer; it is built with clang
# directly (the project compiler may be gcc) from the two parser sources and run for a
# bounded time. Without clang + libFuzzer the test reports itself skipped.
set(MF_FUZZ_SECONDS 20 CACHE STRING "seconds the fuzz_http test fuzzes")
set(MF_ROOT ${CMAKE_CURRENT_LIST_DIR}/..)
find_program(MF_CLANG NAMES clang-14 clang)
set(MF_FUZZ_OK OFF)
if(MF_CLANG)
  set(_probe ${CMAKE_BINARY_DIR}/fuzz_probe.c)
  file(WRITE ${_probe} "#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n")
  execute_process(COMMAND ${MF_CLANG} -fsanitize=fuzzer ${_probe} -o ${CMAKE_BINARY_DIR}/fuzz_probe
                  RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
  if(_rc EQUAL 0)
    set(MF_FUZZ_OK ON)
  endif()
endif()
if(MF_FUZZ_OK)
  set(_fuzz_src ${MF_ROOT}/tests/fuzz/fuzz_http.c ${MF_ROOT}/serving/http.c ${MF_ROOT}/serving/api.c)
  add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/fuzz_http
    COMMAND ${MF_CLANG} -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -D_GNU_SOURCE -I${MF_ROOT} ${_fuzz_src} -lcjson -lm -o ${CMAKE_BINARY_DIR}/fuzz_http
    DEPENDS ${_fuzz_src} ${MF_ROOT}/serving/http.h ${MF_ROOT}/serving/api.h
    COMMENT "fuzz_http (clang + libFuzzer)")
  add_custom_target(fuzz_http ALL DEPENDS ${CMAKE_BINARY_DIR}/fuzz_http)
  add_test(NAME fuzz_http COMMAND bash ${MF_ROOT}/tests/fuzz/run_fuzz.sh ${CMAKE_BINARY_DIR}/fuzz_http
           ${MF_FUZZ_SECONDS} ${CMAKE_BINARY_DIR}/fuzz_http_work)
  set_tests_properties(fuzz_http PROPERTIES TIMEOUT 120)
else()
  add_test(NAME fuzz_http COMMAND sh -c "echo 'skipped: fuzz_http needs clang with libFuzzer (scripts/setup.sh --tests installs clang and libclang-rt-14-dev)'; exit 77")
  set_tests_properties(fuzz_http PROPERTIES SKIP_RETURN_CODE 77)
endif()

# The official OpenAI Node SDK against the server (needs node and the npm package that
# scripts/setup.sh --tests fetches; skipped otherwise). Uses the e2e fixture's tiny model.
add_test(NAME serving_openai COMMAND bash ${MF_ROOT}/tests/serving_openai.sh $<TARGET_FILE:mforge> ${CMAKE_BINARY_DIR}/testdata)
set_tests_properties(serving_openai PROPERTIES FIXTURES_REQUIRED e2e_data TIMEOUT 120 SKIP_RETURN_CODE 77)
