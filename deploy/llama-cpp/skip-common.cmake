# Included at the end of llama.cpp's project() while llama-cpp-python builds it (CMAKE_PROJECT_llama.cpp_INCLUDE,
# set by the Makefile). llama-cpp-python forces llama.cpp's `common` library on, but its Python bindings load only
# libllama and libggml*: `common` (chat templates, argument parsing, an HTTP client) is about half of the compile
# on 2 cores. Turning it off here, after the force and before llama.cpp reads it, leaves the installed library
# unchanged.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)
