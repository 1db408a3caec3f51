/*{
    "DESCRIPTION": "Colour grade: hue rotation about the grey axis, saturation, contrast around mid grey and brightness. Defaults leave the picture unchanged.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Color Adjustment"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "hue", "LABEL": "Hue (turns)", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "saturation", "LABEL": "Saturation", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 2.0},
        {"NAME": "contrast", "LABEL": "Contrast", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 2.0},
        {"NAME": "brightness", "LABEL": "Brightness", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 2.0}
    ]
}*/

const vec3 LUMA = vec3(0.2126, 0.7152, 0.0722);

// Rotate a colour about the (1,1,1) grey axis by angle a (radians), Rodrigues' formula.
vec3 hueRotate(vec3 c, float a) {
    const vec3 k = vec3(0.57735026919);
    float ca = cos(a);
    return c * ca + cross(k, c) * sin(a) + k * dot(k, c) * (1.0 - ca);
}

void main() {
    vec4 src = IMG_THIS_PIXEL(inputImage);
    vec3 c = src.rgb;
    if (hue > 0.0) {
        c = hueRotate(c, hue * 6.28318530718);
    }
    float y = dot(c, LUMA);
    c = mix(vec3(y), c, saturation);
    c = (c - 0.5) * contrast + 0.5;
    c *= brightness;
    gl_FragColor = vec4(clamp(c, 0.0, 1.0), 1.0);
}
