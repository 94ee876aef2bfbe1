"""What the security scan allows and refuses, as data: modules, builtins, dunders and qualified names.

A *qualified name* is the canonical dotted path of an imported object (``numpy.ctypeslib`` for
``np.ctypeslib`` after ``import numpy as np``). :func:`refusal` judges one; it looks at every suffix,
so a module re-exported by a library (``logging.os.system``, ``torch.serialization.pickle``) is
judged as what it is.

The runtime sandbox is the boundary (no processes, no native loading, files only where allowed);
the scan refuses what is clearly an escape attempt or has no use in a plugin, and says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "ALLOWED_DUNDERS",
    "ALLOWED_MODULES",
    "ATTRIBUTE_NAME_RULES",
    "FORBIDDEN_BUILTINS",
    "FRAME_ATTRS",
    "HUB_LOADERS",
    "PLUGIN_SETTINGS",
    "STAR_IMPORT_OK",
    "Rule",
    "is_allowed_module",
    "is_rule_prefix",
    "refusal",
    "restricted_name",
]

# The guide's allowed libraries, the SDK (native and guide import paths), and standard-library
# modules that neither run processes, open files, load code nor reach interpreter internals.
# ``sys``, ``ast`` and ``importlib.metadata`` are allowed for a few attributes only (_ONLY below).
# The top-level packages of the guide's import paths (engine.plugins..., shared.plugins...), which
# featurebus.sdk.aliases provides; a test keeps the two the same.
GUIDE_ROOTS = ("engine", "shared")

ALLOWED_MODULES = frozenset(
    {
        # the guide's table
        "numpy", "pandas", "polars", "pyarrow", "torch", "transformers", "sentence_transformers", "onnxruntime",
        "PIL", "cv2", "imageio", "librosa", "soundfile", "ffmpeg", "requests", "httpx", "aiohttp",
        "os", "json", "re", "typing", "dataclasses", "pydantic", "logging",
        # used by the guide's own examples
        "torchvision", "io", "hashlib", "asyncio",
        # the SDK and the guide's import paths for it
        "featurebus.sdk", *GUIDE_ROOTS,
        # side-effect-free standard library
        "math", "cmath", "statistics", "random", "decimal", "fractions", "numbers", "operator", "functools",
        "itertools", "collections", "enum", "abc", "copy", "string", "textwrap", "unicodedata", "base64",
        "binascii", "struct", "datetime", "time", "calendar", "zoneinfo", "uuid", "heapq", "bisect", "array",
        "contextlib", "concurrent.futures", "threading", "queue", "warnings", "typing_extensions", "types",
        "html", "urllib.parse", "zlib", "gzip", "bz2", "lzma", "difflib", "fnmatch", "secrets", "hmac",
        # ordinary code that needs only a few attributes of these (see _ONLY)
        "sys", "ast", "importlib.metadata",
    }
)  # fmt: skip
SDK_ROOTS = ("featurebus", *GUIDE_ROOTS)
# `from X import *` hides which names a module uses; only modules with nothing to refuse may do it.
STAR_IMPORT_OK = frozenset(
    {"typing", "typing_extensions", "math", "cmath", "dataclasses", "enum", "collections", "itertools",
     "functools", "statistics", *GUIDE_ROOTS, "featurebus.sdk"}
)  # fmt: skip

FORBIDDEN_BUILTINS = {
    "eval": "use json.loads for parsing, dataclasses for config",
    "exec": "plugins may not run generated code",
    "compile": "plugins may not compile code",
    "open": "embed config as Python dicts or json.loads a string constant; library I/O such as torch.load, "
    "from_pretrained or pd.read_csv is allowed",
    "setattr": "use class attributes or constructor assignment",
    "delattr": "use class attributes or constructor assignment",
    "__import__": "import modules with import statements",
    "globals": "pass values explicitly",
    "locals": "pass values explicitly",
    "vars": "read attributes by their constant names",
    "breakpoint": "remove debugging calls",
    "help": "help() imports modules by name and runs a pager; remove it",
    "license": "remove interactive helpers",
    "memoryview": "plugins may not view raw memory",
    "__build_class__": "define classes with class statements",
    "__builtins__": "use the builtins directly",
    "__loader__": "plugins may not reach the import system",
    "__spec__": "plugins may not reach the import system",
}
ALLOWED_DUNDERS = frozenset(
    {
        "__init__", "__call__", "__name__", "__qualname__", "__module__", "__doc__", "__file__", "__version__",
        "__all__", "__len__", "__iter__", "__next__", "__enter__", "__exit__", "__aenter__", "__aexit__",
        "__repr__", "__str__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__",
        "__bool__", "__contains__", "__getitem__", "__setitem__", "__delitem__", "__post_init__", "__add__",
        "__sub__", "__mul__", "__truediv__", "__floordiv__", "__mod__", "__neg__", "__abs__", "__slots__",
        "__annotations__", "__main__", "__future__", "__await__", "__aiter__", "__anext__", "__del__",
        "__format__", "__float__", "__int__", "__index__", "__matmul__",
    }
)  # fmt: skip
# `__class__` only to read a name: `self.__class__.__name__` (not `.__base__`, `.__subclasses__`).
CLASS_NAME_READS = frozenset({"__name__", "__qualname__", "__module__"})
FRAME_ATTRS = {
    "f_globals", "f_locals", "f_back", "f_builtins", "f_code", "gi_frame", "gi_code", "cr_frame", "cr_code",
    "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code", "co_consts", "func_globals",
}  # fmt: skip
HUB_LOADERS = {"from_pretrained", "SentenceTransformer", "hf_hub_download", "snapshot_download", "pipeline"}


@dataclass(frozen=True)
class Rule:
    code: str
    what: str  # what is refused, completed with the qualified name
    fix: str


_SPAWN = Rule("SEC002", "runs a process", "plugins may not run shell commands or processes; use requests or httpx")
_NATIVE = Rule(
    "SEC008",
    "loads native code",
    "plugins may not load shared libraries or compile extensions; use the allowed libraries' Python APIs",
)
_CODE = Rule("SEC004", "loads or runs code by name", "import modules with import statements")
_FD = Rule(
    "SEC012",
    "opens files or raw descriptors (open() under another name, which the guide forbids)",
    "read files through library readers (pd.read_csv, torch.load, Image.open, json.loads of a constant)",
)
_LISTING = Rule(
    "SEC012",
    "lists directories",
    "a plugin knows its own files: name them (os.path.join(os.path.dirname(__file__), 'vocab.txt')); "
    "load models with from_pretrained or load_namespace_model",
)
_LINK = Rule(
    "SEC012",
    "creates or follows links",
    "plugins have no use for links; write ordinary files in the scratch directory",
)
_PROCESS_STATE = Rule(
    "SEC013",
    "changes the worker process's identity, directory or limits",
    "plugins share a worker with later frames; leave process-wide state alone",
)
_TRACE = Rule("SEC006", "hooks the interpreter", "plugins may not trace, profile or hook the interpreter")
_PICKLE = Rule("SEC007", "unpickles arbitrary objects", "store data as Parquet, CSV, JSON or safetensors")
_REMOTE_CODE = Rule("SEC007", "runs code downloaded with a model", "use models that need no remote code")
_LOGCONF = Rule(
    "SEC013",
    "reconfigures logging process-wide (and imports classes named in the config)",
    "use logging.getLogger(__name__) and its methods",
)

# Modules that are never reachable, whatever package re-exports them (any component after the first).
FORBIDDEN_COMPONENTS: dict[str, Rule] = {
    **dict.fromkeys(("subprocess", "_posixsubprocess", "multiprocessing", "pty", "webbrowser"), _SPAWN),
    **dict.fromkeys(("ctypes", "_ctypes", "ctypeslib", "cffi", "_cffi_backend", "_ffi", "f2py", "cpp_extension",
                     "distutils", "setuptools", "sqlite3", "_sqlite3", "threadpoolctl"), _NATIVE),
    **dict.fromkeys(("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve"), _PICKLE),
    **dict.fromkeys(("builtins", "imp", "zipimport", "pkgutil", "runpy", "codeop", "pdb", "gc", "inspect",
                     "dynamic_module_utils"), _CODE),
    **dict.fromkeys(("shutil", "socket", "_socket", "posix", "fcntl", "mmap", "joblib", "loky", "psutil"), Rule(
        "SEC001", "reaches a module that is not on the allowlist", "import only the allowed libraries")),
}  # fmt: skip

# Names refused as an attribute of anything, known or not: their only use is the refused thing.
ATTRIBUTE_NAME_RULES: dict[str, Rule] = {
    **dict.fromkeys(("subprocess_exec", "subprocess_shell", "create_subprocess_exec", "create_subprocess_shell",
                     "ProcessPoolExecutor", "base_subprocess", "_make_subprocess_transport",
                     "BaseSubprocessTransport", "_UnixSubprocessTransport", "SubprocessStreamProtocol",
                     "read_clipboard", "to_clipboard"), _SPAWN),
    **dict.fromkeys(("load_library", "_load_library", "load_inline", "dlopen", "_dlopen", "CDLL", "PyDLL",
                     "cdll", "pydll", "windll", "oledll", "LoadLibrary", "register_custom_ops_library",
                     "CUDAPluggableAllocator", "register_plugin_function", "preload_dlls", "add_dll_directory"),
                    _NATIVE),
    **dict.fromkeys(("ExtensionFileLoader", "SourceFileLoader", "SourcelessFileLoader", "exec_module",
                     "load_module", "spec_from_file_location", "module_from_spec",
                     "get_class_from_dynamic_module"), _CODE),
    **dict.fromkeys(("symlink_to", "hardlink_to", "link_to"), _LINK),
}  # fmt: skip

# Denied qualified names below an allowed root: (path after the root, prefix match on the last part).
_DENY: dict[str, list[tuple[tuple[str, ...], bool, Rule]]] = {
    "os": [
        *[((n,), star, _SPAWN) for n, star in [
            ("system", False), ("popen", False), ("exec", True), ("spawn", True), ("fork", True),
            ("posix_spawn", True), ("kill", True), ("plock", False), ("startfile", False),
            ("register_at_fork", False), ("_exit", False), ("abort", False), ("login_tty", False)]],
        # Raw descriptors and os.open/fdopen are open() under another name; descriptors the plugin did
        # not open belong to the worker (its sockets, its logs).
        *[((n,), star, _FD) for n, star in [
            ("open", False), ("fdopen", False), ("openpty", False), ("pipe", True), ("dup", True),
            ("close", False), ("closerange", False), ("read", False), ("readv", False), ("pread", False),
            ("preadv", False), ("write", False), ("writev", False), ("pwrite", False), ("pwritev", False),
            ("sendfile", False), ("splice", False), ("copy_file_range", False), ("memfd_create", False),
            ("set_inheritable", False), ("set_blocking", False), ("fchmod", False), ("fchown", False),
            ("ftruncate", False), ("mkfifo", False), ("mknod", False)]],
        # Links redirect later reads and writes (scratch -> /etc); readlink probes /proc/self/*.
        *[((n,), False, _LINK) for n in ("symlink", "link", "readlink")],
        # Listing is how a plugin would look for what is not its own (/proc, other caches); none of
        # the guide's examples lists a directory.
        *[((n,), False, _LISTING) for n in ("listdir", "scandir", "walk", "fwalk", "listxattr")],
        *[((n,), False, _FD) for n in ("getxattr", "setxattr", "removexattr", "truncate", "eventfd")],
        *[((n,), star, _PROCESS_STATE) for n, star in [
            ("chdir", False), ("fchdir", False), ("chroot", False), ("umask", False), ("chmod", False),
            ("lchmod", False), ("chown", False), ("lchown", False), ("setns", False), ("unshare", False),
            ("setuid", False), ("setgid", False), ("setre", True), ("setres", True), ("sete", True),
            ("setgroups", False), ("initgroups", False), ("setsid", False), ("setpg", True),
            ("pidfd_open", False)]],
        # Fine on purpose: os.path.*, os.environ reads and writes (the guide's device settings; the
        # sandboxed process is the plugin's alone), os.stat, os.makedirs/mkdir/remove/unlink/rename/
        # replace (the guide unlinks downloaded assets; a plugin manages files in its scratch directory,
        # and the sandbox confines writes there), os.cpu_count, os.getpid, os.sep, os.urandom.
    ],
    # io.open *is* the builtin open; FileIO and open_code are the same door.
    "io": [((n,), False, _FD) for n in ("open", "open_code", "FileIO")],
    # open() again, with compression: decompress bytes with gzip.decompress(data) instead.
    **{lib: [(("open",), False, _FD)] for lib in ("gzip", "bz2", "lzma")},
    "asyncio": [],  # create_subprocess_* and .subprocess are caught by name and by component
    "concurrent": [(("futures", "process"), False, _SPAWN)],
    "threading": [((n,), True, _TRACE) for n in ("settrace", "setprofile")],
    "logging": [
        (("config",), False, _LOGCONF),
        (("setLoggerClass",), False, _LOGCONF),
        (("setLogRecordFactory",), False, _LOGCONF),
    ],
    "torch": [
        (("utils", "collect_env"), False, _SPAWN),
        (("multiprocessing",), False, _SPAWN),
        (("distributed",), False, Rule("SEC002", "starts processes and opens sockets", "run one process per worker")),
        (("hub", "load"), False, Rule("SEC007", "downloads and runs hubconf.py code", "use from_pretrained or a bundled model")),
        (("package",), False, Rule("SEC007", "imports code packaged with the model", "load weights with safetensors")),
        (("serialization", "add_safe_globals"), False, Rule("SEC007", "widens what weights_only unpickles", "save plain tensors")),
        (("serialization", "safe_globals"), False, Rule("SEC007", "widens what weights_only unpickles", "save plain tensors")),
    ],
    "numpy": [(("testing", "extbuild"), False, _NATIVE)],
    "PIL": [
        (("ImageMath", "eval"), False, Rule("SEC003", "evaluates an expression string", "compose ImageChops/Image operations")),
        (("ImageMath", "unsafe_eval"), False, Rule("SEC003", "evaluates an expression string", "compose ImageChops/Image operations")),
        (("ImageShow",), False, _SPAWN),
        (("ImageGrab",), False, _SPAWN),
        (("EpsImagePlugin",), False, _SPAWN),
        # PIL imports every name in Image._plugins on Image.init(): a plugin list is an import by name.
        (("Image", "_plugins"), False, _CODE),
        (("Image", "init"), False, _CODE),
        (("Image", "preinit"), False, _CODE),
    ],
    "transformers": [
        (("agents",), False, Rule("SEC003", "runs generated Python code", "call the model and parse its output")),
        (("tools",), False, Rule("SEC003", "runs generated Python code", "call the model and parse its output")),
    ],
    "polars": [(("plugins",), False, _NATIVE)],
    # Code objects and functions built from them run bytecode the scanner never sees.
    "types": [((n,), False, Rule("SEC004", "builds code or functions from raw parts", "define functions with def"))
              for n in ("CodeType", "FunctionType", "LambdaType", "CellType")],
    # Formatter.get_field/get_value walk attribute paths named by a string: getattr by another name.
    "string": [(("Formatter",), False, Rule("SEC006", "reads attributes named by a string",
                                           "format plain values with f-strings or str.format"))],
}  # fmt: skip

# Modules plugins may use for a few attributes only: everything else on them is refused.
_ONLY: dict[str, tuple[frozenset[str], Rule]] = {
    "sys": (
        frozenset(
            {
                "version_info",
                "version",
                "hexversion",
                "platform",
                "maxsize",
                "maxunicode",
                "byteorder",
                "implementation",
                "float_info",
                "int_info",
                "hash_info",
                "thread_info",
                "float_repr_style",
                "api_version",
                "abiflags",
                "getsizeof",
                "getrecursionlimit",
                "getdefaultencoding",
                "getfilesystemencoding",
                "stdout",
                "stderr",
                "exit",
                "argv",
                "flags",
                "exc_info",
                "exception",
                "intern",
                "is_finalizing",
                "getrefcount",
                "stdlib_module_names",
                "builtin_module_names",
                "executable",
                "prefix",
                "base_prefix",
                "exec_prefix",
                "base_exec_prefix",
            }
        ),
        Rule(
            "SEC006",
            "reaches interpreter internals (sys.modules, sys.path, frames, hooks)",
            "plugins may read sys.version_info, sys.platform, sys.maxsize and similar facts; import your own "
            "modules with relative imports",
        ),
    ),
    "ast": (
        frozenset({"literal_eval"}),
        Rule("SEC003", "parses code", "plugins may use ast.literal_eval to read literals"),
    ),
    "importlib": (
        frozenset({"metadata"}),
        Rule("SEC004", "reaches the import system", "import modules with import statements"),
    ),
    "metadata": (  # as importlib.metadata
        frozenset({"version", "PackageNotFoundError", "metadata", "requires", "packages_distributions"}),
        Rule(
            "SEC004",
            "reaches entry points or distributions (which import code by name)",
            'use importlib.metadata.version("package") for version checks',
        ),
    ),
}

# Settings plugins may assign (process-wide, but documented knobs with no escape in them).
PLUGIN_SETTINGS = (
    "torch.backends.",
    "torch._dynamo.config.",
    "pandas.options.",
    "PIL.Image.MAX_IMAGE_PIXELS",
    "PIL.ImageFile.LOAD_TRUNCATED_IMAGES",
)

_ALLOWED_PARENTS = frozenset(".".join(m.split(".")[:i]) for m in ALLOWED_MODULES for i in range(1, m.count(".") + 1))
_RULE_PREFIXES = frozenset(
    set(_DENY)
    | {root for root in _ONLY if root != "metadata"}
    | {"importlib.metadata", "os.environ", "os.environb", "concurrent.futures"}
    | {
        ".".join((root, *rest[:i]))
        for root, rules in _DENY.items()
        for rest, _, _ in rules
        for i in range(1, len(rest))
    }
)


def is_allowed_module(module: str, own: frozenset[str] = frozenset()) -> bool:
    parts = module.split(".")
    if parts[0] in own:
        return True
    return any(".".join(parts[:i]) in ALLOWED_MODULES for i in range(1, len(parts) + 1))


def _match_root(parts: list[str], i: int) -> tuple[Rule, str] | None:
    root = parts[i]
    rest = parts[i + 1 :]
    if root in _ONLY and rest and (root != "metadata" or (i > 0 and parts[i - 1] == "importlib")):
        allowed, rule = _ONLY[root]
        if rest[0] not in allowed:
            return rule, ".".join(parts[i : i + 2])
    for path, star, rule in _DENY.get(root, ()):
        n = len(path)
        if len(rest) >= n and tuple(rest[: n - 1]) == path[:-1]:
            last = rest[n - 1]
            if last == path[-1] or (star and last.startswith(path[-1])):
                return rule, ".".join(parts[i : i + n + 1])
    return None


@lru_cache(maxsize=65536)
def refusal(qualname: str, environment: frozenset[str] = frozenset()) -> tuple[Rule, str] | None:
    """The rule that refuses ``qualname`` and the part of it that is refused, or None;
    ``environment``: top-level modules of the plugin's own environment, allowed as the libraries are."""
    parts = qualname.split(".")
    for i, part in enumerate(parts):
        if i and part in FORBIDDEN_COMPONENTS:
            return FORBIDDEN_COMPONENTS[part], ".".join(parts[: i + 1])
        if i and part in ATTRIBUTE_NAME_RULES:
            return ATTRIBUTE_NAME_RULES[part], ".".join(parts[: i + 1])
        if parts[0] in SDK_ROOTS and i and part.startswith("_") and not part.startswith("__"):
            return Rule("SEC004", "is an SDK internal", "use the SDK's public names"), ".".join(parts[: i + 1])
        found = _match_root(parts, i)
        if found:
            return found
    if not is_allowed_module(qualname, environment) and qualname not in _ALLOWED_PARENTS:
        # `import urllib.parse` binds `urllib`, which reaches urllib.request: every path must stay
        # inside an allowed module.
        return Rule("SEC001", "is not on the allowlist", "import only the allowed libraries"), qualname
    return None


@lru_cache(maxsize=65536)
def is_rule_prefix(qualname: str) -> bool:
    """True when some attribute path below ``qualname`` is refused (it is a door, not a room)."""
    parts = qualname.split(".")
    return any(".".join(parts[i:]) in _RULE_PREFIXES for i in range(len(parts)))


# Names operator.attrgetter/methodcaller may not be given. Only names whose one use is a refused
# thing: intermediate path parts (`utils`, `Image`, `config`, `path`, `read`) are ordinary attribute
# names of plugin objects, and a refused module handed to the getter is caught as an escape anyway.
_RESTRICTED = frozenset(
    set(FORBIDDEN_COMPONENTS)
    | set(ATTRIBUTE_NAME_RULES)
    | {"environ", "environb", "modules", "meta_path", "path_hooks", "_getframe", "settrace", "setprofile",
       "import_module", "system", "popen", "putenv", "unsetenv", "fdopen", "FileIO", "open_code", "symlink",
       "readlink", "ctypeslib", "load_library", "fork", "forkpty", "posix_spawn", "posix_spawnp"}
    | {f"{verb}{form}" for verb in ("exec", "spawn") for form in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
    | FRAME_ATTRS
)  # fmt: skip


def restricted_name(name: str) -> bool:
    """A name operator.attrgetter/methodcaller may not be given (it reaches something refused)."""
    if name.startswith("__") and name.endswith("__") and name not in ALLOWED_DUNDERS:
        return True
    return name in _RESTRICTED
