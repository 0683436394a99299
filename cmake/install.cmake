# What `cmake --install` puts under the prefix, in three components that are also the three
# Debian packages (packaging/, scripts/package.sh):
#   lib    libderp0      libderp.so.0 (the SONAME) and its versioned file
#   dev    libderp-dev   include/derp/*.h, the libderp.so link, CMake package config, libderp.pc
#   tools  derp-tools    bin/derp-*, man pages, shell completions, the systemd unit
include(CMakePackageConfigHelpers)

set(DERP_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/libderp")

install(TARGETS derp EXPORT libderpTargets
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT lib NAMELINK_COMPONENT dev
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(DIRECTORY libderp/include/derp DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" COMPONENT dev
  FILES_MATCHING PATTERN "*.h")
install(FILES "${CMAKE_BINARY_DIR}/include/derp/version.h"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/derp" COMPONENT dev)
install(TARGETS ${DERP_TOOL_TARGETS} RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT tools)

# find_package(libderp CONFIG) -> libderp::derp. The library's public headers use only the
# standard library, and everything it links is private to the .so, so a consumer needs only
# Threads (the one PUBLIC dependency).
install(EXPORT libderpTargets NAMESPACE libderp:: DESTINATION "${DERP_CMAKE_DIR}" COMPONENT dev)
configure_package_config_file(cmake/libderpConfig.cmake.in
  "${CMAKE_BINARY_DIR}/cmake/libderpConfig.cmake" INSTALL_DESTINATION "${DERP_CMAKE_DIR}")
# 0.x: the SONAME is 0 and so is the major version; any 0.y consumer links any 0.z library.
write_basic_package_version_file("${CMAKE_BINARY_DIR}/cmake/libderpConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}" COMPATIBILITY SameMajorVersion)
install(FILES "${CMAKE_BINARY_DIR}/cmake/libderpConfig.cmake"
              "${CMAKE_BINARY_DIR}/cmake/libderpConfigVersion.cmake"
  DESTINATION "${DERP_CMAKE_DIR}" COMPONENT dev)

# pkg-config --cflags --libs libderp: libdir and includedir relative to ${prefix}, and
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(DERP_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(DERP_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(DERP_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(DERP_PC_LIBDIR "\${exec_prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
# prefix itself is found from the .pc file's own place (pkg-config's ${pcfiledir}), so the file
# is right wherever the prefix was installed (cmake --install --prefix P, dpkg -x).
file(RELATIVE_PATH DERP_PC_TO_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" DERP_PC_TO_PREFIX "${DERP_PC_TO_PREFIX}")
configure_file(cmake/libderp.pc.in "${CMAKE_BINARY_DIR}/libderp.pc" @ONLY)
install(FILES "${CMAKE_BINARY_DIR}/libderp.pc" DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
  COMPONENT dev)

# derp-serve as a service: the systemd unit and its flags file (component `system`, packaged
# with the tools in derp-tools). Debian's places when the prefix is /usr (/lib/systemd/system,
# /etc/default), the prefix's own otherwise (PREFIX/lib/systemd/system, PREFIX/etc/default).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(DERP_SYSTEMD_UNITDIR "/lib/systemd/system" CACHE PATH "Where derp-serve.service goes")
else()
  set(DERP_SYSTEMD_UNITDIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/system"
      CACHE PATH "Where derp-serve.service goes")
endif()
set(DERP_DEFAULT_FILE "${CMAKE_INSTALL_FULL_SYSCONFDIR}/default/derp-serve")
configure_file(packaging/systemd/derp-serve.service.in
  "${CMAKE_BINARY_DIR}/packaging/derp-serve.service" @ONLY)
install(FILES "${CMAKE_BINARY_DIR}/packaging/derp-serve.service"
  DESTINATION "${DERP_SYSTEMD_UNITDIR}" COMPONENT system)
install(FILES packaging/systemd/derp-serve.default DESTINATION "${CMAKE_INSTALL_FULL_SYSCONFDIR}/default"
  RENAME derp-serve COMPONENT system)
include(packaging/cpack.cmake)
