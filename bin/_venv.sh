# Sourced by bin/serve and bin/test: create .venv and install the project into it
# once, and again whenever pyproject.toml or requirements-encoders.txt changes. Needs only
# Python 3.11. The encoder packages ship the pretrained weights; they go in without their
# declared requirements (audio I/O and CLI tools the service does not use, e.g. pyaudio).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python_bin=${PYTHON:-$(command -v python3.11 || command -v python3)}
extras=${1:-}
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
  || [ requirements-encoders.txt -nt "$stamp" ]; then
  echo "Installing uvac-service into .venv (first run takes a few minutes: PyTorch)..." >&2
  [ -x .venv/bin/python ] || "$python_bin" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  # PyPI's torch wheel carries CUDA libraries and triton (about 4.3 GB, see
  # benchmarks/results/install_size.json) that a host without an NVIDIA GPU never uses. There,
  # take torch and torchaudio (the pins of pyproject.toml) from the PyTorch CPU index first;
  # UVAC_TORCH_INDEX names another index, or empty keeps PyPI's build.
  torch_index=${UVAC_TORCH_INDEX-https://download.pytorch.org/whl/cpu}
  if [ -n "$torch_index" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    torch_pins=$(grep -oE '"torch(audio)?==[^"]+"' pyproject.toml | tr -d '"')
    # shellcheck disable=SC2086  # the pins are two words on purpose
    if ! .venv/bin/python -m pip install --quiet --retries 0 --timeout 20 \
      --index-url "$torch_index" $torch_pins; then
      echo "No CPU build of torch from $torch_index; installing PyPI's (with CUDA libraries)." >&2
    fi
  fi
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
  .venv/bin/python -m pip install --quiet --no-deps -r requirements-encoders.txt
  touch "$stamp"
fi
