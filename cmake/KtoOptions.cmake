# One INTERFACE target carries the language standard, warnings and sanitizer switches.
option(KTO_SANITIZE "Build with AddressSanitizer + UndefinedBehaviorSanitizer" OFF)
option(KTO_TSAN "Build with ThreadSanitizer" OFF)
option(KTO_WERROR "Treat warnings as errors" OFF)

# Qt requires position-independent code; compile executables as PIC too (not PIE), so that all
# targets share compatible flags and the one torch precompiled header below is valid for each.
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
set(CMAKE_CXX_COMPILE_OPTIONS_PIE ${CMAKE_CXX_COMPILE_OPTIONS_PIC})

add_library(kto_options INTERFACE)
target_compile_features(kto_options INTERFACE cxx_std_17)
set(CMAKE_CXX_EXTENSIONS OFF)
target_compile_options(kto_options INTERFACE -Wall -Wextra -Wno-unused-parameter -Winvalid-pch)
if(KTO_WERROR)
  target_compile_options(kto_options INTERFACE -Werror)
endif()
if(KTO_SANITIZE)
  target_compile_options(kto_options INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer)
  target_link_options(kto_options INTERFACE -fsanitize=address,undefined)
endif()
if(KTO_TSAN)
  target_compile_options(kto_options INTERFACE -fsanitize=thread -fno-omit-frame-pointer)
  target_link_options(kto_options INTERFACE -fsanitize=thread)
endif()
target_include_directories(kto_options INTERFACE ${CMAKE_SOURCE_DIR})
target_compile_definitions(kto_options INTERFACE KTO_VERSION="${PROJECT_VERSION}")

# libtorch's headers are heavy: one precompiled torch/torch.h is shared by every target that uses
# torch (kto_core, its tests, the CLI), so a clean build on 2 cores stays fast.
add_library(kto_torch_pch STATIC ${CMAKE_SOURCE_DIR}/cmake/torch_pch.cpp)
target_link_libraries(kto_torch_pch PUBLIC kto_options ${TORCH_LIBRARIES})
target_compile_options(kto_torch_pch PUBLIC -Wno-unused-parameter)
target_precompile_headers(kto_torch_pch PRIVATE <torch/torch.h>)

# Use from any target that includes torch: kto_use_torch_pch(target)
function(kto_use_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM kto_torch_pch)
endfunction()
