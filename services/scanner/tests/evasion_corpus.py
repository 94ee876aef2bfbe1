"""Attempts to slip forbidden behaviour past the scanner. Every one must be rejected.

Each entry: (family, source of processors/core.py). The source is scanned inside an otherwise
valid plugin, so a rejection can only come from the snippet.
"""

from __future__ import annotations

EVASIONS: list[tuple[str, str]] = [
    # --- imports that are not on the allowlist, however they are spelled
    ("import", "import subprocess"),
    ("import", "import subprocess as sp\nsp.run(['id'])"),
    ("import", "from subprocess import run as go"),
    ("import", "import socket"),
    ("import", "from ctypes import CDLL"),
    ("import", "import multiprocessing.pool"),
    ("import", "import importlib\nimportlib.import_module('subprocess')"),
    ("import", "import sys\nsys.modules['os'].system('id')"),
    ("import", "import builtins\nbuiltins.eval('1')"),
    ("import", "import atexit"),
    ("import", "import gc\ngc.get_objects()"),
    ("import", "import inspect"),
    ("import", "import runpy"),
    ("import", "import shutil\nshutil.rmtree('/')"),
    ("import", "import pathlib\npathlib.Path('/etc/passwd').read_text()"),
    ("import", "from os import system"),
    ("import", "from os import popen as log\nlog('id')"),
    ("import", "from os import *"),
    ("import", "from os import execv"),
    ("import", "x = __import__('os')"),
    # --- aliases and references, not only calls
    ("alias", "import os as o\no.system('id')"),
    ("alias", "import os\ne = os\ne.system('id')"),
    ("alias", "import os\na = os\nb = a\nb.popen('id')"),
    ("alias", "import os\ndef run(m=os):\n    return m.system('id')"),
    ("alias", "import os\ndef run(*, m=os):\n    return m.spawnl(0, 'x')"),
    ("alias", "import os\nif (x := os):\n    x.system('id')"),
    ("alias", "import os\nrun = os.system"),
    ("alias", "import os\nlist(map(os.system, ['id']))"),
    ("alias", "import os\nimport functools\nf = functools.partial(os.system, 'id')"),
    ("alias", "import os\nimport threading\nthreading.Thread(target=os.system, args=('id',)).start()"),
    ("alias", "import os\nhandlers = {'go': os.execvp}"),
    ("alias", "import os.path\nos.system('id')"),
    # --- forbidden builtins as calls and as references
    ("builtin", "x = eval('1 + 1')"),
    ("builtin", "f = eval"),
    ("builtin", "g = [exec][0]"),
    ("builtin", "code = compile('1', 'x', 'eval')"),
    ("builtin", "data = open('/etc/passwd').read()"),
    ("builtin", "class P:\n    pass\nsetattr(P, 'x', 1)"),
    ("builtin", "class P:\n    x = 1\ndelattr(P, 'x')"),
    ("builtin", "globals()['x'] = 1"),
    ("builtin", "def f():\n    return locals()"),
    ("builtin", "breakpoint()"),
    ("builtin", "b = __builtins__"),
    ("builtin", "sorted(['1'], key=eval)"),
    # --- reflection with names the scanner cannot see
    ("reflection", "import os\ngetattr(os, 'sys' + 'tem')('id')"),
    ("reflection", "import os\nname = 'system'\ngetattr(os, name)('id')"),
    ("reflection", "import os\ngetattr(os, 'system')('id')"),
    ("reflection", "import os\nhasattr(os, ''.join(['po', 'pen']))"),
    ("reflection", "import os\nv = vars(os)"),
    ("reflection", "import json\nd = json.__dict__"),
    ("reflection", "def f():\n    pass\ng = getattr(f, '__globals__')"),
    # --- object-graph escapes through dunders, frames and code objects
    ("dunder", "k = ().__class__.__bases__[0].__subclasses__()"),
    ("dunder", "def f():\n    pass\ng = f.__globals__"),
    ("dunder", "c = (lambda: 0).__code__"),
    ("dunder", "m = type(1).__mro__"),
    ("dunder", "b = (1).__class__.__base__"),
    ("dunder", "def gen():\n    yield 1\nfr = gen().gi_frame.f_globals"),
    ("dunder", "try:\n    1 / 0\nexcept Exception as e:\n    fr = e.__traceback__.tb_frame"),
    ("dunder", "x = 'a'.__getattribute__('upper')"),
    ("dunder", "def f():\n    pass\nc = f.__closure__"),
    # --- writes to the environment (reads are allowed)
    ("environ", "import os\nos.environ['LD_PRELOAD'] = '/tmp/x.so'"),
    ("environ", "import os\nos.environ.update({'PYTHONPATH': '/tmp'})"),
    ("environ", "import os\nos.environ.setdefault('HF_ENDPOINT', 'http://evil')"),
    ("environ", "import os\ndel os.environ['PATH']"),
    ("environ", "import os\nos.putenv('A', 'b')"),
    ("environ", "from os import environ as env\nenv['A'] = '1'"),
    ("environ", "import os\nenv = os.environ\nenv['A'] = '1'"),
    ("environ", "import os\nos.environ['A'] += 'x'"),
    # --- loading that runs code from the data
    ("loading", "import torch\nw = torch.load('w.pt')"),
    ("loading", "import torch\nw = torch.load('w.pt', weights_only=False)"),
    ("loading", "import numpy as np\na = np.load('a.npy', allow_pickle=True)"),
    ("loading", "from transformers import AutoModel\nm = AutoModel.from_pretrained('x/y', trust_remote_code=True)"),
    ("loading", "import pandas as pd\ndf = pd.read_pickle('d.pkl')"),
    ("loading", "import pickle"),
    ("loading", "import marshal"),
    ("loading", "import shelve"),
    # --- source the scanner cannot read as the interpreter would
    ("encoding", "# -*- coding: utf-7 -*-\nx = 1"),
    ("encoding", "# coding: rot13\nx = 1"),
    ("encoding", "x = 1\x00\nimport subprocess"),
    ("encoding", "def broken(:\n    pass"),
    ("encoding", "x = " + "(" * 300 + "1" + ")" * 300),
    # --- configuration is never read from the archive: suppression comments change nothing
    ("suppression", "import subprocess  # noqa"),
    ("suppression", "import socket  # nosec"),
    ("suppression", "# featurebus: allow\nx = eval('1')"),
]

# Archive-level evasions: (family, {path inside the plugin dir: content}) added to a valid plugin.
ARCHIVE_EVASIONS: list[tuple[str, dict[str, str | bytes]]] = [
    ("files", {"processors/fast.so": b"\x7fELF"}),
    ("files", {"processors/core.cpython-311.pyc": b"\x00"}),
    ("files", {"processors/__pycache__/core.cpython-311.pyc": b"\x00"}),
    ("files", {"evil.pth": "import os; os.system('id')"}),
    ("files", {"setup.py": "from setuptools import setup\nsetup()"}),
    ("files", {"weights.zip": b"PK\x05\x06" + b"\x00" * 18}),
    ("files", {"json.py": "x = 1"}),
    ("files", {"featurebus/__init__.py": ""}),
    ("files", {"sitecustomize.py": "x = 1"}),
]
