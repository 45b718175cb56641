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
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
  .venv/bin/python -m pip install --quiet --no-deps -r requirements-encoders.txt
  touch "$stamp"
fi
