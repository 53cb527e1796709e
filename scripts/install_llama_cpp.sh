#!/usr/bin/env bash
# Install llama-cpp-python built from source together with llama.cpp's command-line
# tools (llama-imatrix, llama-quantize, llama-perplexity) into the given Python
# environment. The build takes about 10 minutes on 2 cores, so the finished wheel is
# cached outside the checkout and reused by later set-ups and CI runs.
#
# Also installs llama.cpp's Hugging Face to GGUF converter (convert_hf_to_gguf.py with
# its `conversion` package and the gguf-py it imports) from the same source package
# into <environment>/share/quant-eval/llama.cpp/. The vendored gguf-py is newer than
# gguf 0.19 on PyPI, and the converter puts it first on its own sys.path, so it never
# replaces the gguf package that quant_eval imports.
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
cache_root=${QUANT_EVAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/quant-eval}/llama-cpp-python
cache_dir=$cache_root/$version-$flags_hash

sdist=llama_cpp_python-$version.tar.gz
converter_cache=$cache_root/$version-converter  # independent of the build flags
converter_dir=$("$python" -c 'import sys; print(sys.prefix)')/share/quant-eval/llama.cpp
work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT

download_sdist() {
    if [ ! -f "$work_dir/$sdist" ]; then
        "$python" -m pip download --no-deps --no-binary :all: -d "$work_dir" "llama-cpp-python==$version"
    fi
}

install_wheel() {
    if "$python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$version')" 2>/dev/null \
        && [ -x "$("$python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/bin/llama-quantize" ]; then
        echo "llama-cpp-python $version with the llama.cpp tools is already installed"
        return
    fi

    wheel=$(ls "$cache_dir"/llama_cpp_python-$version-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
        echo "Building llama-cpp-python $version with the llama.cpp tools (about 10 minutes)..."
        mkdir -p "$cache_dir"
        download_sdist
        # --no-cache-dir: pip would otherwise reuse a wheel built with other CMAKE_ARGS.
        CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
            "$python" -m pip wheel --no-deps --no-cache-dir -w "$work_dir/wheel" "$work_dir/$sdist"
        # Move into the cache only once the build succeeded, so a broken build is never reused.
        mv "$work_dir"/wheel/llama_cpp_python-$version-*.whl "$cache_dir"/
        wheel=$(ls "$cache_dir"/llama_cpp_python-$version-*.whl | head -n 1)
    fi

    "$python" -m pip install --no-deps --force-reinstall "$wheel"
    "$python" -m pip install 'numpy>=1.26' 'typing-extensions>=4.5' 'diskcache>=5.6.1' 'jinja2>=2.11.3'
    echo "Installed $wheel"
}

install_converter() {
    if [ ! -f "$converter_cache/convert_hf_to_gguf.py" ]; then
        echo "Unpacking llama.cpp's convert_hf_to_gguf.py from the llama-cpp-python $version source package..."
        download_sdist
        local vendor=llama_cpp_python-$version/vendor/llama.cpp
        tar -xzf "$work_dir/$sdist" -C "$work_dir" \
            "$vendor/convert_hf_to_gguf.py" "$vendor/conversion" "$vendor/gguf-py" "$vendor/LICENSE"
        mkdir -p "$cache_root"
        rm -rf "$converter_cache.partial"
        mv "$work_dir/$vendor" "$converter_cache.partial"
        mv "$converter_cache.partial" "$converter_cache"
    fi
    if ! diff -rq -x __pycache__ "$converter_cache" "$converter_dir" >/dev/null 2>&1; then
        rm -rf "$converter_dir"
        mkdir -p "$(dirname "$converter_dir")"
        cp -r "$converter_cache" "$converter_dir"
        echo "Installed the converter in $converter_dir"
    else
        echo "llama.cpp's converter is already installed in $converter_dir"
    fi
}

install_wheel
install_converter
