"""Java 17+ is needed by the Kafka broker and by Spark."""

from __future__ import annotations

import re
import shutil
import subprocess

from app.operations.errors import StackError

MIN_JAVA = 17


def java_major_version(java_bin: str) -> int:
    """The major version of ``java_bin``; raises StackError with one line when it is missing or too old."""
    path = shutil.which(java_bin)
    if path is None:
        raise StackError(
            f"Java {MIN_JAVA}+ is required for Kafka and Spark but '{java_bin}' was not found "
            "(install openjdk-17-jre-headless or set RISKRAY_JAVA_BIN)"
        )
    result = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        raise StackError(f"could not read the Java version from '{path} -version'")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise StackError(f"Java {MIN_JAVA}+ is required, but '{path}' is Java {major}")
    return major
