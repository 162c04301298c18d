"""Official Wan2.1 checkpoint names <-> the library models' names, one module per component.

Every component module offers the same functions, so the loaders and the tiny writer can treat them alike:

- `library_keys(official_key) -> tuple[str, ...]`: the library keys one official tensor becomes; `()` means
  the library model has no use for it. An unknown key passes through unchanged, so strict loading reports it.
- `to_library(official_key, tensor) -> Iterator[(library_key, tensor)]`: the same, with the tensors.
- `official_key(library_key) -> str | None`: the inverse name; None for a library alias the official file
  does not store.
- `to_official(library_state) -> dict[str, Tensor]`: the inverse on a whole state dict (used by the writer).
- a config builder that infers the library config from the official tensor shapes.
"""
