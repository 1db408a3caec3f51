/*{
    "DESCRIPTION": "Displacement by the picture's own luminance gradient: pixels are pushed along (angle 0) or across (angle 0.25, a marbled flow) the slope of the brightness. scale sets how far apart the slope is measured (bigger = broader, stronger pushes). amount 0 leaves the picture unchanged. Four texture taps.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Distortion"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Amount", "TYPE": "float", "DEFAULT": 0.3, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "scale", "LABEL": "Scale", "TYPE": "float", "DEFAULT": 0.25, "MIN": 0.05, "MAX": 1.0},
        {"NAME": "angle", "LABEL": "Direction (turns; 0.25 = along contours)", "TYPE": "float", "DEFAULT": 0.0, "MIN": 0.0, "MAX": 1.0}
    ]
}*/

const vec3 LUMA = vec3(0.2126, 0.7152, 0.0722);
// The slope is measured across STEP * scale of the frame height, in luminance per frame height.
// amount 1.0 pushes by PUSH per unit of slope, never further than MAX_PUSH (of the frame height).
const float STEP = 0.02;
const float PUSH = 0.05;
const float MAX_PUSH = 0.1;

void main() {
    vec2 uv = isf_FragNormCoord;
    float aspect = RENDERSIZE.x / max(RENDERSIZE.y, 1.0);
    float h = STEP * scale;
    vec4 here = IMG_NORM_PIXEL(inputImage, uv);
    float l0 = dot(here.rgb, LUMA);
    float lx = dot(IMG_NORM_PIXEL(inputImage, uv + vec2(h / aspect, 0.0)).rgb, LUMA);
    float ly = dot(IMG_NORM_PIXEL(inputImage, uv + vec2(0.0, h)).rgb, LUMA);
    vec2 g = vec2(lx - l0, ly - l0) / h;
    float a = angle * 6.28318530718;
    g = mat2(cos(a), sin(a), -sin(a), cos(a)) * g;
    vec2 off = g * (amount * PUSH);
    float len = length(off);
    off *= min(1.0, amount * MAX_PUSH / max(len, 1e-6));
    vec3 c = amount > 0.0
        ? IMG_NORM_PIXEL(inputImage, clamp(uv + off / vec2(aspect, 1.0), 0.0, 1.0)).rgb
        : here.rgb;
    gl_FragColor = vec4(c, 1.0);
}
