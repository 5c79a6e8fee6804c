# SPDX-License-Identifier: Apache-2.0
# What `cmake --install` puts beside the binaries, the library and the man
# pages, and the Debian package CPack makes of it all (`make deb`;
# docs/deploy.md, "Debian package"; tests/deploy/deb_test.sh checks it):
#   share/doc/physpool/   the guides (docs/*.md), copyright (machine-
#                         readable, from LICENSE and NOTICE), changelog.Debian.gz
#   lib/systemd/system/, lib/sysusers.d/, lib/tmpfiles.d/, SYSCONF/physpool/
#                         deploy/systemd/ (cmake/InstallSystem.cmake)
# The package installs under /usr (/etc for the configuration, a conffile).

# The Debian revision and the maintainer (changelog, control). Set
# PHYSPOOL_DEB_MAINTAINER to a real address for a release.
set(PHYSPOOL_DEB_RELEASE 1 CACHE STRING "Debian revision of the package")
set(PHYSPOOL_DEB_MAINTAINER "physpool maintainers <physpool@example.org>"
    CACHE STRING "Maintainer of the Debian package (Name <address>)")
set(PHYSPOOL_DEB_VERSION "${PROJECT_VERSION}-${PHYSPOOL_DEB_RELEASE}")

set(PHYSPOOL_DEBIAN_DIR ${PROJECT_SOURCE_DIR}/deploy/debian)
file(GLOB PHYSPOOL_DOCS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PHYSPOOL_DOCS} DESTINATION share/doc/physpool)
install(FILES ${PHYSPOOL_DEBIAN_DIR}/copyright DESTINATION share/doc/physpool)

# changelog.Debian.gz: gzip -9n (no name, no timestamp), as Debian wants it.
find_program(PHYSPOOL_GZIP gzip REQUIRED)
configure_file(${PHYSPOOL_DEBIAN_DIR}/changelog.in
               ${PROJECT_BINARY_DIR}/debian/changelog.Debian @ONLY)
add_custom_command(
  OUTPUT ${PROJECT_BINARY_DIR}/debian/changelog.Debian.gz
  COMMAND ${PHYSPOOL_GZIP} -9nf -k ${PROJECT_BINARY_DIR}/debian/changelog.Debian
  DEPENDS ${PROJECT_BINARY_DIR}/debian/changelog.Debian
  VERBATIM)
add_custom_target(physpool_deb_changelog ALL
  DEPENDS ${PROJECT_BINARY_DIR}/debian/changelog.Debian.gz)
install(FILES ${PROJECT_BINARY_DIR}/debian/changelog.Debian.gz
        DESTINATION share/doc/physpool)

# deploy/systemd/ with the installed paths in the units.
install(CODE "
  set(PHYSPOOL_SYSTEMD_SRC \"${PROJECT_SOURCE_DIR}/deploy/systemd\")
  set(PHYSPOOL_STAGE \"${PROJECT_BINARY_DIR}/install-stage\")")
install(SCRIPT ${PROJECT_SOURCE_DIR}/cmake/InstallSystem.cmake)

# The Debian package. CPACK_SET_DESTDIR: the configuration goes to /etc,
# outside the prefix, so CPack installs with DESTDIR=<staging root> and
# CMAKE_INSTALL_PREFIX=/usr.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME physpool)
set(CPACK_PACKAGE_VENDOR "The physpool Authors")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "DMA memory pool daemon for accelerator runtimes")
# The synopsis is CPACK_PACKAGE_DESCRIPTION_SUMMARY; this is the rest.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
  "physpoold owns a pool of physical, DMA-able memory (pinned through VFIO,
or simulated with shared memory) and leases regions of it to accelerator
runtimes over gRPC, with per-tenant limits, lease renewal and revocation,
and Prometheus metrics. Leases survive a restart of the daemon.
.
This package holds physpoold, the physpoolctl command line tool,
physpool-keeper (keeps the memory across daemon restarts), the Kubernetes
DRA plugin physpool-dra, the client library libphyspool-client with its
headers, CMake package and pkg-config file, and the systemd units.")
set(CPACK_DEBIAN_PACKAGE_RELEASE ${PHYSPOOL_DEB_RELEASE})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${PHYSPOOL_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends from the binaries' shared libraries (dpkg-shlibdeps, dpkg-dev);
# a shlibs file (GENERATE_SHLIBS) and the ldconfig trigger (triggers, as
# CMake 3.25 adds none) for libphyspool-client.so.0.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PHYSPOOL_DEBIAN_DIR}/conffiles ${PHYSPOOL_DEBIAN_DIR}/postinst
    ${PHYSPOOL_DEBIAN_DIR}/prerm ${PHYSPOOL_DEBIAN_DIR}/postrm
    ${PHYSPOOL_DEBIAN_DIR}/triggers)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Only what `cmake --install` installs (no source package).
set(CPACK_SOURCE_GENERATOR "")
include(CPack)
