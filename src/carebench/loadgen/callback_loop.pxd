# Cython declarations for callback_loop.py (see carebench.loadgen.compiled): typed attributes
# make the compiled classes' state C structs. Every attribute stays public: tests reach them.

cimport cython

cdef class CallbackClient

cdef class CallbackLoop:
    cdef public object engine
    cdef public object timer
    cdef public double budget_end
    cdef public double until
    cdef public object shape
    cdef public object watchdog
    cdef public Py_ssize_t running
    cdef public bint halted
    cdef public object event_loop
    cdef public object finished
    cdef public list ready
    cdef public object choose_priority
    cdef public list keys
    cdef public list latencies
    cdef public list times

    # The per-request loop: typed locals read clients' fields as C struct members.
    @cython.locals(
        client=CallbackClient, now=double, sent=Py_ssize_t, timeout=double, until=double,
        budget_end=double,
    )
    cpdef send_each(self, clients)

cdef class CallbackClient:
    cdef public CallbackLoop loop
    cdef public object channel
    cdef public Py_ssize_t index
    cdef public double deadline
    cdef public bint expired
    cdef public double sent
    cdef public object priority
    cdef public object connecting
    cdef public object settle_bound
    cdef public dict requests
    cdef public object send

    @cython.locals(loop=CallbackLoop, done=double, ready=list)
    cpdef settle(self, response, error)
