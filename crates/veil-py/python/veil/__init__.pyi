import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from ._veil import Deidentifier as Deidentifier, Key as Key, Policy as Policy
from .errors import HeldBack as HeldBack, UsageError as UsageError, VeilError as VeilError, VeilRuntimeError as VeilRuntimeError

__version__: str
PathLike = Union[str, os.PathLike[str]]
KeyLike = Union[Key, PathLike, None]
PolicyLike = Union[Policy, PathLike, None]
Data = Union[bytes, bytearray, memoryview, PathLike]

class DeidResult:
    outcome: str
    data: Optional[bytes]
    relative_path: Optional[str]
    reason: Optional[str]
    detail: Optional[str]
    @property
    def released(self) -> bool: ...
    @property
    def exit_code(self) -> int: ...
    def raise_for_outcome(self) -> "DeidResult": ...
    def dataset(self) -> Any: ...

class RunResult(Dict[str, Any]):
    exit_code: int
    def raise_for_outcome(self) -> "RunResult": ...

class VerifyResult(Dict[str, Any]):
    exit_code: int
    @property
    def clean(self) -> bool: ...

def deidentify(data: Data, key: KeyLike = None, policy: PolicyLike = None,
               patient_map: Optional[PathLike] = None) -> DeidResult: ...
def deidentify_series(members: Sequence[Data], key: KeyLike = None, policy: PolicyLike = None,
                      patient_map: Optional[PathLike] = None) -> List[DeidResult]: ...
def deid_paths(inputs: Union[PathLike, Iterable[PathLike]], out: PathLike, key: KeyLike = None,
               policy: PolicyLike = None, *, quarantine: Optional[PathLike] = None,
               patient_map: Optional[PathLike] = None, threads: Optional[int] = None, fsync: bool = False,
               progress: Optional[Callable[[str, str, Optional[str], Optional[str]], Any]] = None) -> RunResult: ...
def verify(outputs: Union[PathLike, Iterable[PathLike]], *, against: Union[PathLike, Iterable[PathLike], None] = None,
           policy: PolicyLike = None, ocr: bool = False) -> VerifyResult: ...
def risk(table: Any, quasi: Optional[Sequence[str]] = None, *, sensitive: Optional[str] = None,
         subject: Optional[str] = None, population: Optional[int] = None, k: int = 5) -> Dict[str, Any]: ...
