#!/usr/bin/env bash
# Install llama-cpp-python built from source together with llama.cpp's command-line
# tools (llama-imatrix, llama-quantize, llama-perplexity) into the given Python
# environment. The build takes about 10 minutes on 2 cores, so the finished wheel is
# cached outside the checkout and reused by later set-ups and CI runs.
#
# Usage: scripts/install_llama_cpp.sh PYTHON
set -euo pipefail

python=${1:?usage: $0 PYTHON}
version=0.3.36
# Portable build: GGML_NATIVE=OFF keeps the AVX2 baseline instead of tuning for the
# building CPU. LLAMA_BUILD_TOOLS=ON alone fails at configure time because of the
# multimodal tool, so LLAVA_BUILD=OFF drops it; the RPATH lets the installed tools find
# libllama and libggml inside site-packages.
cmake_args='-DGGML_NATIVE=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAVA_BUILD=OFF -DLLAMA_TOOLS_INSTALL=ON -DCMAKE_INSTALL_RPATH=$ORIGIN/../lib;$ORIGIN/../llama_cpp/lib'

flags_hash=$(printf '%s' "$cmake_args" | sha256sum | cut -c1-12)
cache_dir=${QUANT_EVAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/quant-eval}/llama-cpp-python/$version-$flags_hash

if "$python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$version')" 2>/dev/null \
    && [ -x "$("$python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/bin/llama-quantize" ]; then
    echo "llama-cpp-python $version with the llama.cpp tools is already installed"
    exit 0
fi

wheel=$(ls "$cache_dir"/llama_cpp_python-$version-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
    echo "Building llama-cpp-python $version with the llama.cpp tools (about 10 minutes)..."
    mkdir -p "$cache_dir"
    build_dir=$(mktemp -d)
    trap 'rm -rf "$build_dir"' EXIT
    # --no-cache-dir: pip would otherwise reuse a wheel built with other CMAKE_ARGS.
    CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        "$python" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
        -w "$build_dir" "llama-cpp-python==$version"
    # Move into the cache only once the build succeeded, so a broken build is never reused.
    mv "$build_dir"/llama_cpp_python-$version-*.whl "$cache_dir"/
    wheel=$(ls "$cache_dir"/llama_cpp_python-$version-*.whl | head -n 1)
fi

"$python" -m pip install --no-deps --force-reinstall "$wheel"
"$python" -m pip install 'numpy>=1.26' 'typing-extensions>=4.5' 'diskcache>=5.6.1' 'jinja2>=2.11.3'
echo "Installed $wheel"
