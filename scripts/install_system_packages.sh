#!/usr/bin/env bash
# Install the Debian 12 packages that the PDF scorecard and its tests need: pandoc, the
# xelatex engine with the LaTeX packages and fonts that pandoc's default template loads,
# a Japanese font, and pdftotext; and the Slurm daemons, munge and MariaDB that the Slurm
# profile's test runs a one-node cluster with (scripts/start_test_slurm.sh). Does nothing
# when all of them are installed.
#
# Usage (as root): scripts/install_system_packages.sh
set -euo pipefail

# xelatex rather than pdflatex, because pdflatex cannot set Japanese text with system
# fonts. On a Debian 12 image without TeX, apt-get counts 37 packages and 662 MB for this
# set, against about 370 MB for pandoc, pdflatex and lmodern without Japanese.
packages=(
    pandoc                     # markdown to LaTeX (Debian 12 ships pandoc 2.17)
    texlive-xetex              # xelatex, fontspec, unicode-math and the template's packages
    lmodern                    # lmodern.sty, which pandoc 2.17's template always loads
    texlive-fonts-recommended  # the ZapfDingbats metrics (pzdr) that hyperref needs in xelatex
    fonts-noto-cjk             # Noto Serif CJK JP, the font for Japanese text
    poppler-utils              # pdftotext, which the tests use to read the PDF
    slurm-wlm                  # slurmctld, slurmd and the clients (Slurm 22.05 in Debian 12)
    slurmdbd                   # accounting daemon, without which sacct has no job records
    mariadb-server             # the database slurmdbd stores its records in
    munge                      # authentication between the Slurm daemons and clients
    iproute2                   # ip, to set up the test cluster's network namespace
)

is_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

has_candidate() {
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

missing=()
for package in "${packages[@]}"; do
    is_installed "$package" || missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "All system packages for the PDF scorecard and the Slurm test are installed: ${packages[*]}"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing ${missing[*]} needs root; rerun this script as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
install_missing() {
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Refresh the package lists only when they are needed: when they lack a missing package
# (a new image has no lists at all), or when installing from them fails because the
# versions they name are gone from the mirror.
needs_update=false
for package in "${missing[@]}"; do
    has_candidate "$package" || needs_update=true
done

echo "Installing ${missing[*]}"
if [ "$needs_update" = true ]; then
    apt-get update -q
    install_missing
elif ! install_missing; then
    echo "Installing from the current package lists failed; running apt-get update and retrying"
    apt-get update -q
    install_missing
fi
echo "Installed ${missing[*]}"
