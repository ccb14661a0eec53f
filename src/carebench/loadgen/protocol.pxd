# Cython declarations for protocol.py (see carebench.loadgen.compiled): typed attributes make
# the compiled class's state a C struct. Every attribute stays public: tests reach them.

cdef class ResponseProtocol:
    cdef public object _loop
    cdef public list _received
    cdef public object _reading
    cdef public list _body
    cdef public object _headers_for
    cdef public dict _bare
    cdef public object on_body
    cdef public object _parser
    cdef public object _keep_alive
    cdef public object _status_code
    cdef public object _transport
    cdef public object _write
    cdef public object _waiter
    cdef public object _on_settled
    cdef public bint closed
