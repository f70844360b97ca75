# -*- coding: utf-8 -*-
# Copyright: (c) 2026, atlasia DevOps team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    """Compressor options shared by the modules that write compressed artifacts (``module_utils.compression``)."""

    DOCUMENTATION = r"""
options:
  compression_level:
    description:
      - Compression level (gzip 1-9, default 5; zstd 1-19, default 3). gzip 5 is measured about 15% faster than 6
        for a file 0.3% larger (docs/performance.md).
    type: int
  compression_threads:
    description:
      - Threads of the compressor (C(pigz -p), C(zstd -T)); V(0) uses every CPU available to the task.
    type: int
    default: 0
"""
