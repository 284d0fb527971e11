! The Gaussian-unknown-mean model from Fortran 2003, through the `ppx`
! module of clients/fortran/ppx.f90 (libppx's plain C ABI bound with
! iso_c_binding, no C glue).
module gaussian_model
  use ppx
  implicit none
contains
  subroutine forward(sim, user) bind(c)
    type(c_ptr), value :: sim, user
    real(c_double) :: mu
    integer(c_int) :: rc
    if (c_associated(user)) rc = 0 ! no model state: user is unused
    mu = ppx_sample_normal(sim, 1.0d0, sqrt(5.0d0), "mu"//c_null_char, "mu"//c_null_char)
    rc = ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0d0), c_null_ptr, "obs0"//c_null_char, "obs0"//c_null_char)
    rc = ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0d0), c_null_ptr, "obs1"//c_null_char, "obs1"//c_null_char)
    call ppx_set_result(sim, [mu], 1_c_size_t)
  end subroutine
end module

program gaussian_fortran
  use ppx
  use gaussian_model
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
