# CUDA emulation build (MF_CUDA_EMULATION, on by default and in CI): kernels/cuda/*.cu compiled
# as C++ with the host compiler against kernels/cuda/emu, so that every custom kernel runs on
# the CPU - in a seeded random thread order, with race, bounds and initialization checks -
# and is compared with its CPU twin by the tests (tests/cuda_emu.cmake). No GPU, no CUDA
# toolkit needed.
#
#   mf_cuda_emu_rt    the emulator runtime (not instrumented)
#   mf_emu_prep       build-time tool: copies sources with __shared__ declarations rewritten
#   mf_cuda_emu       kernels/cuda/*.cu (+ headers) as prepared C++, instrumented
#   mf_cpu_twins      kernels/cpu/*.c, the CPU twins the kernel tests compare against
#   mf_cuda_emu_test(name [SOURCES ...] [LIBS ...])  an emulated test program + ctest entry
#
# Sources listed as "file <name.cu> <reason>" in kernels/cuda/emu/skip.txt are not built here.
option(MF_CUDA_EMULATION "build kernels/cuda against the CPU emulator and test it" ON)
if(NOT MF_CUDA_EMULATION)
  return()
endif()

set(MF_EMU_DIR ${CMAKE_SOURCE_DIR}/kernels/cuda/emu)
set(MF_EMU_GEN ${CMAKE_BINARY_DIR}/cuda_emu/src)          # prepared copies of the sources
set(MF_EMU_LOG_DIR ${CMAKE_BINARY_DIR}/cuda_emu/launches) # kernels launched, per test

# The compiler inserts a call before each memory access (ThreadSanitizer's instrumentation);
# the hooks are the emulator's own (emu_check.cpp), so nothing links libtsan.
# GCC: no scalar replacement of aggregates, so a float4/int4 access stays one 16-byte access
# (and its alignment is checked) instead of four 4-byte ones.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  set(MF_EMU_INSTRUMENT -fsanitize=thread --param=tsan-instrument-func-entry-exit=0
                        --param=tsan-distinguish-volatile=1 -fno-tree-sra)
elseif(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  set(MF_EMU_INSTRUMENT -fsanitize=thread -mllvm -tsan-instrument-func-entry-exit=0
                        -mllvm -tsan-distinguish-volatile=1)
else()
  message(FATAL_ERROR "MF_CUDA_EMULATION needs GCC or Clang (-fsanitize=thread instrumentation)")
endif()
set(MF_EMU_CXX_FLAGS -O1 -g -fno-omit-frame-pointer -fno-strict-aliasing -Wno-unknown-pragmas
                     ${MF_EMU_INSTRUMENT})

add_library(mf_cuda_emu_rt STATIC ${MF_EMU_DIR}/emu_sched.cpp ${MF_EMU_DIR}/emu_check.cpp
                                  ${MF_EMU_DIR}/emu_runtime.cpp)
target_include_directories(mf_cuda_emu_rt PUBLIC ${CMAKE_SOURCE_DIR})
target_compile_options(mf_cuda_emu_rt PRIVATE -O2 -g ${MF_WARN})
target_compile_definitions(mf_cuda_emu_rt PUBLIC MF_CUDA_EMULATION=1
                           PRIVATE MF_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
target_link_libraries(mf_cuda_emu_rt PUBLIC ${CMAKE_DL_LIBS})

add_executable(mf_emu_prep ${MF_EMU_DIR}/emu_prep.cpp ${MF_EMU_DIR}/emu_scan.cpp)
target_include_directories(mf_emu_prep PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_options(mf_emu_prep PRIVATE ${MF_WARN})

# mf_cuda_emu_prepare(<out-var> <sources...>): prepared copies under ${MF_EMU_GEN}, at the same
# relative paths (so includes between them resolve); .cu files become .cu.cpp.
function(mf_cuda_emu_prepare out)
  set(gen)
  foreach(src ${ARGN})
    get_filename_component(abs ${src} ABSOLUTE)
    file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${abs})
    set(dst ${MF_EMU_GEN}/${rel})
    if(dst MATCHES "\\.cu$")
      set(dst ${dst}.cpp)
    endif()
    get_filename_component(dir ${dst} DIRECTORY)
    file(MAKE_DIRECTORY ${dir})
    add_custom_command(OUTPUT ${dst} COMMAND mf_emu_prep ${abs} ${dst}
                       DEPENDS mf_emu_prep ${abs} COMMENT "Preparing ${rel} for CUDA emulation" VERBATIM)
    list(APPEND gen ${dst})
  endforeach()
  set(${out} ${gen} PARENT_SCOPE)
endfunction()

# the kernels
file(GLOB MF_EMU_KERNEL_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu)
file(GLOB MF_EMU_KERNEL_HDR CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cuh
                                              ${CMAKE_SOURCE_DIR}/kernels/cuda/*.h)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${MF_EMU_DIR}/skip.txt)
file(STRINGS ${MF_EMU_DIR}/skip.txt MF_EMU_SKIP_FILES REGEX "^file[ \t]")
foreach(line ${MF_EMU_SKIP_FILES})
  string(REGEX MATCH "^file[ \t]+([^ \t]+)" _ "${line}")
  string(REPLACE "." "\\." re "${CMAKE_MATCH_1}")
  list(FILTER MF_EMU_KERNEL_SRC EXCLUDE REGEX "/${re}$")
endforeach()
mf_cuda_emu_prepare(MF_EMU_KERNEL_GEN ${MF_EMU_KERNEL_SRC} ${MF_EMU_KERNEL_HDR})
add_library(mf_cuda_emu STATIC ${MF_EMU_KERNEL_GEN})
target_include_directories(mf_cuda_emu PUBLIC ${MF_EMU_GEN} ${MF_EMU_DIR}/include ${CMAKE_SOURCE_DIR})
target_compile_options(mf_cuda_emu PRIVATE ${MF_EMU_CXX_FLAGS} ${MF_WARN})
target_link_libraries(mf_cuda_emu PUBLIC mf_cuda_emu_rt)

# the CPU twins, on their own (the full library would bring the real CUDA objects along)
file(GLOB MF_EMU_TWIN_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cpu/*.c)
list(FILTER MF_EMU_TWIN_SRC EXCLUDE REGEX "/backend_cpu\\.c$")
add_library(mf_cpu_twins STATIC ${MF_EMU_TWIN_SRC})
target_include_directories(mf_cpu_twins PUBLIC ${CMAKE_SOURCE_DIR} ${CBLAS_INCLUDE})
target_compile_options(mf_cpu_twins PRIVATE ${MF_WARN} ${MF_OPT})
target_compile_definitions(mf_cpu_twins PRIVATE _GNU_SOURCE)
target_link_libraries(mf_cpu_twins PUBLIC OpenMP::OpenMP_C ${OPENBLAS_LIB} m)

# The whole library on the emulated CUDA backend: mf_objs plus the three variant files
# built as for CUDA (device.c hands out kernels/cuda/backend_cuda.cu, linked in rather than
# opened as a plugin) but without NCCL,
# linked with the emulated kernels instead of the real ones. mforge_emu is mforge on it:
# `device: cuda` trains on the emulator, so the CUDA backend's trainer path, checkpoints
# from and to it, and its agreement with the CPU run are tested without a GPU.
add_library(mf_emu STATIC $<TARGET_OBJECTS:mf_objs> ${MF_VARIANT_SRC})
mf_core_options(mf_emu)
target_compile_definitions(mf_emu PUBLIC MF_HAVE_CUDA=1 MF_CUDA_LINKED=1)
target_link_libraries(mf_emu PUBLIC mf_cuda_emu)
set_target_properties(mf_emu PROPERTIES LINKER_LANGUAGE CXX)
add_executable(mforge_emu ${CMAKE_SOURCE_DIR}/trainers/main.c)
target_compile_options(mforge_emu PRIVATE ${MF_WARN} ${MF_OPT})
target_link_libraries(mforge_emu PRIVATE mf_emu)
set_target_properties(mforge_emu PROPERTIES LINKER_LANGUAGE CXX BUILD_RPATH ${OPENBLAS_DIR})

# An emulated test: <name>.cpp (or SOURCES) prepared and instrumented like the kernels,
# linked with the kernels, the CPU twins and the harness (tests/cuda_emu_test.h). Its
# launches are logged for the kernel count (tests/test_cuda_emu_count.cpp). The name must
# contain "emu" (ctest -R emu runs the emulation suite).
function(mf_cuda_emu_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT name MATCHES "emu")
    message(FATAL_ERROR "mf_cuda_emu_test(${name}): the name must contain 'emu'")
  endif()
  if(NOT T_SOURCES)
    set(T_SOURCES ${name}.cpp)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  mf_cuda_emu_prepare(gen ${T_SOURCES})
  add_executable(${name} ${gen})
  target_link_libraries(${name} PRIVATE mf_cuda_emu_test mf_cuda_emu mf_cpu_twins ${T_LIBS})
  target_compile_options(${name} PRIVATE ${MF_EMU_CXX_FLAGS} ${MF_WARN})
  target_compile_definitions(${name} PRIVATE MF_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME ${name} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES
    ENVIRONMENT "MF_EMU_LAUNCH_LOG=${MF_EMU_LOG_DIR}/${name}.txt"
    FIXTURES_REQUIRED cuda_emu LABELS cuda_emu TIMEOUT ${T_TIMEOUT})
endfunction()
