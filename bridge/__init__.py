"""The eLicensing bridge: national dual-use licences to customs certificates, customs
declarations to licence write-offs, and the reconciliation between them."""

__version__ = "0.1.0"
