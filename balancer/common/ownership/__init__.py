"""The one door every output goes through: claim, lock, stage, record, complete.

Every output kind (a balanced folder, a split, a training run, ...) has a JSON record that
names this tool, the kind and the version, and a rule for the entries it may hold. A
command `claim`s its output folder: the folder must be missing or empty, or be proven an
earlier output of that kind (its record *and* nothing else inside) that the user asked to
resume or replace (`Existing`). The claim holds an exclusive lock on the folder (flock on
the folder itself: the kernel drops it when the process dies, no lock file is left).

Under the claim a command either writes in place (a running record first, every file
atomic, the complete record last) or stages a whole folder beside its target and renames
it into place. A staging folder carries a marker inside, so one left by a killed run is
recognised as the tool's own and removed on the next run; nothing without that proof is
ever deleted. Single files (a plot, a CSV) go through `claim_file`: never over an existing
file unless asked, never inside an input folder or a tool's output.
"""

from .claims import (
    Claim,
    Existing,
    check_claim,
    check_inputs,
    claim,
    claim_file,
    identity,
    overlaps,
    same_place,
)
from .locks import locked, writer_of
from .proof import (
    Listed,
    Listing,
    Proof,
    clear,
    inline_listing,
    list_files,
    listed_now,
    owned_record,
    prove,
    proven,
    sha256_file,
)
from .records import (
    STAGING_MARKER,
    STAGING_SUFFIX,
    TOOL,
    OutputKind,
    declared_kinds,
    differences,
    is_staging,
    read_json_record,
    record_names,
    stamp,
    tool_record,
    write_json,
)
from .staging import staged, sweep_staging

__all__ = [
    "STAGING_MARKER",
    "STAGING_SUFFIX",
    "TOOL",
    "Claim",
    "Existing",
    "Listed",
    "Listing",
    "OutputKind",
    "Proof",
    "check_claim",
    "check_inputs",
    "claim",
    "claim_file",
    "clear",
    "declared_kinds",
    "differences",
    "identity",
    "inline_listing",
    "is_staging",
    "list_files",
    "listed_now",
    "locked",
    "overlaps",
    "owned_record",
    "prove",
    "proven",
    "read_json_record",
    "record_names",
    "same_place",
    "sha256_file",
    "staged",
    "stamp",
    "sweep_staging",
    "tool_record",
    "write_json",
    "writer_of",
]
