/*{
    "DESCRIPTION": "Film grain and scanlines. amount is the master (0 = off): grain strength, and with scanlines (0..1) the depth of the dark lines. The grain is strongest in the mid-tones, changes 24 times a second at speed 1 (0 = frozen). Deterministic in TIME, so renders repeat.",
    "CREDIT": "Latent Jockey",
    "ISFVSN": "2",
    "CATEGORIES": ["Film", "Stylize"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "amount", "LABEL": "Amount", "TYPE": "float", "DEFAULT": 0.3, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "scanlines", "LABEL": "Scanlines", "TYPE": "float", "DEFAULT": 0.5, "MIN": 0.0, "MAX": 1.0},
        {"NAME": "speed", "LABEL": "Speed", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 4.0}
    ]
}*/

const vec3 LUMA = vec3(0.2126, 0.7152, 0.0722);
// About 270 scanlines whatever the output height (at least 2 pixels each).
const float LINES = 270.0;

// Integer hash: xor-shift and multiply rounds give well mixed bits from nearby inputs.
uint mixBits(uint x) {
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

void main() {
    vec3 c = IMG_THIS_PIXEL(inputImage).rgb;
    if (amount <= 0.0) {
        gl_FragColor = vec4(c, 1.0);
        return;
    }
    uvec2 px = uvec2(gl_FragCoord.xy);
    uint frame = uint(floor(TIME * 24.0 * speed));
    uint h = mixBits(px.x + mixBits(px.y + mixBits(frame)));
    float n = float(h >> 8u) * (1.0 / 16777216.0) - 0.5;         // -0.5 .. 0.5
    float y = dot(c, LUMA);
    float mid = 0.35 + 2.6 * y * (1.0 - y);                          // 0.35 at black/white, ~1 mid
    c += n * amount * 0.35 * mid;

    float period = max(2.0, RENDERSIZE.y / LINES);
    float row = floor(gl_FragCoord.y);
    float line = 0.5 - 0.5 * cos(row / period * 6.28318530718);      // 0 between lines, 1 on
    c *= 1.0 - amount * scanlines * 0.6 * line;
    gl_FragColor = vec4(clamp(c, 0.0, 1.0), 1.0);
}
