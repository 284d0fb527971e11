! ppx.f90 — the Fortran binding of libppx (clients/c/ppx_sim.h): the plain C
! ABI through iso_c_binding, as a module (`use ppx`).  Installed by
! `make install` as include/ppx/ppx.f90 and its compiled ppx.mod.
! Strings passed to C must end in c_null_char; `value` of
! ppx_observe_scalar is c_null_ptr to let the engine supply the value.
module ppx
  use iso_c_binding
  implicit none
  ! Distribution kinds (src/dist.h, equal to the PPX wire tags).
  integer(c_int), parameter :: DIST_NORMAL = 1, DIST_UNIFORM = 2, DIST_CATEGORICAL = 3, &
    DIST_POISSON = 4, DIST_BERNOULLI = 5, DIST_BETA = 6, DIST_EXPONENTIAL = 7, DIST_GAMMA = 8, &
    DIST_LOGNORMAL = 9, DIST_BINOMIAL = 10, DIST_WEIBULL = 11
  interface
    function ppx_sim_new(model_name, forward, user) bind(c, name="ppx_sim_new")
      import :: c_ptr, c_funptr, c_char
      character(kind=c_char), dimension(*), intent(in) :: model_name
      type(c_funptr), value :: forward
      type(c_ptr), value :: user
      type(c_ptr) :: ppx_sim_new
    end function
    subroutine ppx_sim_destroy(sim) bind(c, name="ppx_sim_destroy")
      import :: c_ptr
      type(c_ptr) :: sim
    end subroutine
    function ppx_sim_serve(sim, endpoint, max_runs) bind(c, name="ppx_sim_serve")
      import :: c_ptr, c_char, c_int, c_int64_t
      type(c_ptr), value :: sim
      character(kind=c_char), dimension(*), intent(in) :: endpoint
      integer(c_int64_t), value :: max_runs
      integer(c_int) :: ppx_sim_serve
    end function
    function ppx_sim_runs(sim) bind(c, name="ppx_sim_runs")
      import :: c_ptr, c_int64_t
      type(c_ptr), value :: sim
      integer(c_int64_t) :: ppx_sim_runs
    end function
    function ppx_sample_scalar(sim, kind, p0, p1, address, name) bind(c, name="ppx_sample_scalar")
      import :: c_ptr, c_double, c_char, c_int
      type(c_ptr), value :: sim
      integer(c_int), value :: kind
      real(c_double), value :: p0, p1
      character(kind=c_char), dimension(*), intent(in) :: address, name
      real(c_double) :: ppx_sample_scalar
    end function
    function ppx_sample_normal(sim, mean, stddev, address, name) bind(c, name="ppx_sample_normal")
      import :: c_ptr, c_double, c_char
      type(c_ptr), value :: sim
      real(c_double), value :: mean, stddev
      character(kind=c_char), dimension(*), intent(in) :: address, name
      real(c_double) :: ppx_sample_normal
    end function
    function ppx_sample_uniform(sim, low, high, address, name) bind(c, name="ppx_sample_uniform")
      import :: c_ptr, c_double, c_char
      type(c_ptr), value :: sim
      real(c_double), value :: low, high
      character(kind=c_char), dimension(*), intent(in) :: address, name
      real(c_double) :: ppx_sample_uniform
    end function
    function ppx_observe_scalar(sim, kind, p0, p1, value, address, name) bind(c, name="ppx_observe_scalar")
      import :: c_ptr, c_double, c_char, c_int
      type(c_ptr), value :: sim
      integer(c_int), value :: kind
      real(c_double), value :: p0, p1
      type(c_ptr), value :: value
      character(kind=c_char), dimension(*), intent(in) :: address, name
      integer(c_int) :: ppx_observe_scalar
    end function
    function ppx_tag_scalar(sim, value, address, name) bind(c, name="ppx_tag_scalar")
      import :: c_ptr, c_double, c_char, c_int
      type(c_ptr), value :: sim
      real(c_double), value :: value
      character(kind=c_char), dimension(*), intent(in) :: address, name
      integer(c_int) :: ppx_tag_scalar
    end function
    subroutine ppx_set_result(sim, value, n) bind(c, name="ppx_set_result")
      import :: c_ptr, c_double, c_size_t
      type(c_ptr), value :: sim
      real(c_double), intent(in) :: value(*)
      integer(c_size_t), value :: n
    end subroutine
  end interface
end module
