! The Gaussian-unknown-mean model from Fortran 2003 through iso_c_binding:
! libppx's plain C ABI binds without any C glue.
module ppx
  use iso_c_binding
  implicit none
  integer(c_int), parameter :: DIST_NORMAL = 1
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
    function ppx_sample_normal(sim, mean, stddev, address, name) bind(c, name="ppx_sample_normal")
      import :: c_ptr, c_double, c_char
      type(c_ptr), value :: sim
      real(c_double), value :: mean, stddev
      character(kind=c_char), dimension(*), intent(in) :: address, name
      real(c_double) :: ppx_sample_normal
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
    subroutine ppx_set_result(sim, value, n) bind(c, name="ppx_set_result")
      import :: c_ptr, c_double, c_size_t
      type(c_ptr), value :: sim
      real(c_double), intent(in) :: value
      integer(c_size_t), value :: n
    end subroutine
  end interface
contains
  subroutine forward(sim, user) bind(c)
    type(c_ptr), value :: sim, user
    real(c_double) :: mu
    integer(c_int) :: rc
    if (c_associated(user)) rc = 0 ! no model state: user is unused
    mu = ppx_sample_normal(sim, 1.0d0, sqrt(5.0d0), "mu"//c_null_char, "mu"//c_null_char)
    rc = ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0d0), c_null_ptr, "obs0"//c_null_char, "obs0"//c_null_char)
    rc = ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0d0), c_null_ptr, "obs1"//c_null_char, "obs1"//c_null_char)
    call ppx_set_result(sim, mu, 1_c_size_t)
  end subroutine
end module

program gaussian_fortran
  use ppx
  implicit none
  type(c_ptr) :: sim
  character(len=256) :: endpoint
  integer(c_int) :: rc
  if (command_argument_count() < 1) then
    write (0, '(a)') 'usage: gaussian_fortran ENDPOINT'
    stop 2
  end if
  call get_command_argument(1, endpoint)
  sim = ppx_sim_new("Gaussian with unknown mean (Fortran)"//c_null_char, c_funloc(forward), c_null_ptr)
  rc = ppx_sim_serve(sim, trim(endpoint)//c_null_char, 0_c_int64_t)
  call ppx_sim_destroy(sim)
  if (rc /= 0) stop 1
end program
