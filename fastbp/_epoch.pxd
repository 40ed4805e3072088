# Shared with _curvature.pyx: the network and data descriptions, the checked
# entry sequence (_enter: _read_plan, _check_data, _set_data) and the
# forward and backward cores it guards; the penalty, the row-chunk rule and
# the signal check of huge passes.
from cython cimport floating


cdef struct Net:
    Py_ssize_t n_layers
    const Py_ssize_t* units
    const Py_ssize_t* coef_off
    const Py_ssize_t* bias_off
    const Py_ssize_t* act_off
    const Py_ssize_t* delta_off
    const Py_ssize_t* pre_off   # pre-activations (GELU, SiLU) or -1
    const Py_ssize_t* acts      # activation code of each layer, output last
    const double* drop          # dropout rate of each layer (0: none)
    const Py_ssize_t* mask_off  # dropout masks or -1
    const Py_ssize_t* drop_col  # first column in the dropout counter space
    Py_ssize_t drop_width
    const Py_ssize_t* bn_off    # batch norm scale (then shift) or -1; NULL
                                # (and the next three) when no layer has it
    const Py_ssize_t* zhat_off  # normalized pre-activations or -1
    const Py_ssize_t* bn_stat_off  # mean, var, 1 / sqrt(var + eps) or -1
    const Py_ssize_t* run_off   # running mean, var in running or -1
    void* running               # running statistics (floating) or NULL
    unsigned long long seed     # dropout seed of this epoch
    Py_ssize_t gather_off
    Py_ssize_t max_rows
    int out_act
    int loss
    double loss_param           # Huber delta or quantile (0 for the others)


cdef struct Data:
    # Dense rows (X) or CSR (data, indices, indptr); Y and sw may be NULL.
    const void* X
    const void* data
    const Py_ssize_t* indices
    const Py_ssize_t* indptr
    bint sparse
    Py_ssize_t n_samples
    Py_ssize_t n_features
    const void* Y
    const void* sw


cdef class _Arrays:
    cdef const Py_ssize_t[::1] units, coef_off, bias_off, act_off, delta_off
    cdef const Py_ssize_t[::1] pre_off, acts, mask_off, drop_col
    cdef const Py_ssize_t[::1] bn_off, zhat_off, bn_stat_off, run_off
    cdef const double[::1] drop
    cdef Net net  # the plan's network, checked against its own sizes
    cdef Py_ssize_t n_params, work_size, n_running


cdef _Arrays _read_plan(object plan, Net* net, Py_ssize_t n_params,
                        Py_ssize_t work_size, Py_ssize_t rows_needed)
cdef void _check_data(Data* d, Net* net, const floating[:, ::1] X, object csr,
                      const floating[:, ::1] Y, const floating[::1] sw) except *
cdef _Arrays _enter(object plan, Net* net, Data* d, Py_ssize_t n_params,
                   Py_ssize_t work_size, Py_ssize_t rows_needed,
                   const floating[:, ::1] X, object csr,
                   const floating[:, ::1] Y, const floating[::1] sw)
cdef Py_ssize_t _n_rows(object X, object csr)
cdef void _set_data(Data* d, const floating[:, ::1] X, const floating[::1] data,
                    const Py_ssize_t[::1] indices, const Py_ssize_t[::1] indptr,
                    const floating[:, ::1] Y, const floating[::1] sw)
cdef const floating* _forward(Net* net, Data* d, const floating* params,
                              floating* work, const Py_ssize_t* rows,
                              Py_ssize_t row0, Py_ssize_t nb,
                              bint training) noexcept nogil
cdef double _backward(Net* net, Data* d, const floating* params,
                      floating* grad, floating* work, const floating* A0,
                      const Py_ssize_t* rows, Py_ssize_t row0, Py_ssize_t nb,
                      double alpha, double l1, double* share_sw) noexcept nogil
cdef double _add_penalty(Net* net, const floating* params, double alpha,
                         double l1, double sw_sum, double loss) noexcept nogil
cdef Py_ssize_t _step_chunks(Py_ssize_t nb, Py_ssize_t P, int T,
                             const Net* net,
                             Py_ssize_t chunk_work) noexcept nogil
cdef int _check_signals() except -1 nogil
