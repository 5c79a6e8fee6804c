# SPDX-License-Identifier: Apache-2.0
# Run by `cmake --install` and by CPack (install(SCRIPT) in
# cmake/Packaging.cmake), where CMAKE_INSTALL_PREFIX is the one installed
# into (/usr in the Debian package) and DESTDIR, if set, the staging root.
# Installs deploy/systemd/ with the paths that prefix gives:
#   units     PREFIX/lib/systemd/system/{physpoold,physpool-keeper}.service
#             with ExecStart= at PREFIX/bin and --config at SYSCONF
#   sysusers  PREFIX/lib/sysusers.d/physpool.conf
#   tmpfiles  PREFIX/lib/tmpfiles.d/physpool.conf
#   config    SYSCONF/physpool/physpoold.yaml, 0644, never over an existing
#             one (a conffile in the Debian package)
# where SYSCONF is /etc for the prefix /usr (as GNUInstallDirs has it) and
# PREFIX/etc otherwise. Set by the install(CODE) before it:
# PHYSPOOL_SYSTEMD_SRC (deploy/systemd) and PHYSPOOL_STAGE (a scratch dir).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(sysconf "/etc")
else()
  set(sysconf "${CMAKE_INSTALL_PREFIX}/etc")
endif()
set(bindir "${CMAKE_INSTALL_PREFIX}/bin")
set(docdir "${CMAKE_INSTALL_PREFIX}/share/doc/physpool")

file(MAKE_DIRECTORY "${PHYSPOOL_STAGE}")
foreach(unit physpoold physpool-keeper)
  file(READ "${PHYSPOOL_SYSTEMD_SRC}/${unit}.service" text)
  string(REGEX REPLACE "\nExecStart=/usr/local/bin/" "\nExecStart=${bindir}/"
         text "${text}")
  string(REPLACE " /etc/physpool/physpoold.yaml"
         " ${sysconf}/physpool/physpoold.yaml" text "${text}")
  string(REGEX REPLACE "\nDocumentation=file:///usr/local/share/doc/physpool/"
         "\nDocumentation=man:${unit}(8) file://${docdir}/" text "${text}")
  if(NOT text MATCHES "\nExecStart=${bindir}/${unit} "
     OR NOT text MATCHES "\nDocumentation=man:")
    message(FATAL_ERROR "${unit}.service: ExecStart= or Documentation= not "
                        "as cmake/InstallSystem.cmake expects")
  endif()
  file(WRITE "${PHYSPOOL_STAGE}/${unit}.service" "${text}")
  file(INSTALL "${PHYSPOOL_STAGE}/${unit}.service"
       DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endforeach()

foreach(kind sysusers tmpfiles)
  file(INSTALL "${PHYSPOOL_SYSTEMD_SRC}/physpool.${kind}.conf"
       DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/${kind}.d"
       RENAME physpool.conf
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endforeach()

# The default configuration: world-readable (the physpool user reads it;
# it holds token hashes, never tokens), and an operator's is kept.
if(EXISTS "$ENV{DESTDIR}${sysconf}/physpool/physpoold.yaml")
  message(STATUS "Keeping: $ENV{DESTDIR}${sysconf}/physpool/physpoold.yaml")
else()
  file(INSTALL "${PHYSPOOL_SYSTEMD_SRC}/physpoold.yaml"
       DESTINATION "${sysconf}/physpool"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()
