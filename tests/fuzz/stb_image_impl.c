/* The stb_image / stb_image_write implementation compiled with coverage and sanitizers for the
 * fuzz targets (the regular build links the system libstb, the same stb version). */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_write.h>
